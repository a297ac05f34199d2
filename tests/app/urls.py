from django.urls import path
from students.views import example_view, student_list

from . import session_views, views

urlpatterns = [
    path("students/", student_list),
    path("example/", example_view),
    path("atomic/fail/", views.atomic_fail),
    path("atomic/ok/", views.atomic_ok),
    path("atomic/non-atomic/", views.atomic_opt_out),
    path("session/login/", session_views.login),
    path("session/visit/", session_views.visit),
    path("session/logout/", session_views.logout),
]
