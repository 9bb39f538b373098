"""Django views: JSON, path and query parameters, a form with a file, a streamed response, an async view."""

from __future__ import annotations

import asyncio
import hashlib
import os

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt


def index(request):
    return JsonResponse({"framework": "django", "pid": os.getpid(), "secure": request.is_secure()})


def item(request, item_id: int):
    return JsonResponse({"item_id": item_id, "q": request.GET.get("q"), "path": request.path,
                         "script_name": request.META.get("SCRIPT_NAME", "")})  # fmt: skip


@csrf_exempt
def upload(request):
    file = request.FILES["file"]
    data = file.read()
    return JsonResponse({"filename": file.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                         "note": request.POST["note"]})  # fmt: skip


def stream(request):
    return StreamingHttpResponse((f"chunk {i}\n" for i in range(3)), content_type="text/plain")


async def slow_hello(request):
    await asyncio.sleep(0.01)
    return HttpResponse("hello, asynchronously", content_type="text/plain")
