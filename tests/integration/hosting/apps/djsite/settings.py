"""The smallest Django project that serves real views: no database, no templates."""

SECRET_KEY = "only-for-the-tests"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "djsite.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES: dict = {}
USE_TZ = True
FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # bigger uploads go through a temporary file, as in production
