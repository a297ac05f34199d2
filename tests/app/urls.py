from django.urls import path

from . import views

urlpatterns = [
    path("students/", views.student_list),
    path("example/", views.example_view),
    path("atomic/fail/", views.atomic_fail),
    path("atomic/ok/", views.atomic_ok),
    path("atomic/non-atomic/", views.atomic_opt_out),
]
