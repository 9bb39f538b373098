from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("items/<int:item_id>/", views.item),
    path("upload/", views.upload),
    path("stream/", views.stream),
    path("async/", views.slow_hello),
]
