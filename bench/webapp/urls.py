from django.conf import settings
from django.urls import path
from students.views import student_list

from . import views

# `await Student.objects.all()` is aorm's; stock Django gets the same view with `async for`.
_list = student_list if "aorm" in settings.INSTALLED_APPS else views.student_list_stock

urlpatterns = [
    path("students/", _list),
    path("example/", views.example_view),
    path("no-database/", views.no_database),
]
