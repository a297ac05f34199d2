from django.urls import path

from . import session_views, views

urlpatterns = [
    path("students/", views.student_list),
    path("example/", views.example_view),
    path("atomic/fail/", views.atomic_fail),
    path("atomic/ok/", views.atomic_ok),
    path("atomic/non-atomic/", views.atomic_opt_out),
    path("session/login/", session_views.login),
    path("session/visit/", session_views.visit),
    path("session/logout/", session_views.logout),
]
