"""Async views that log in, use the session and log out: Django's auth and sessions, awaited."""

import json

from django.contrib.auth import aauthenticate, alogin, alogout
from django.http import HttpRequest, JsonResponse


async def login(request: HttpRequest) -> JsonResponse:
    credentials = json.loads(request.body)
    user = await aauthenticate(request, **credentials)
    if user is None:
        return JsonResponse({"error": "bad credentials"}, status=403)
    await alogin(request, user)
    await request.session.aset("visits", 0)
    return JsonResponse({"user": user.get_username()})


async def visit(request: HttpRequest) -> JsonResponse:
    user = await request.auser()
    visits = await request.session.aget("visits", 0) + 1
    await request.session.aset("visits", visits)
    return JsonResponse({"user": user.get_username(), "visits": visits})


async def logout(request: HttpRequest) -> JsonResponse:
    await alogout(request)
    return JsonResponse({"user": None})
