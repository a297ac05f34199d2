from django.urls import path
from django.views.decorators.http import require_GET, require_safe
from students import views
from students.api import api

urlpatterns = [
    path("", views.index),
    # The seeds' views stay verbatim; the methods they answer are limited here.
    path("students/", require_safe(views.student_list)),
    path("example/", require_GET(views.example_view)),
    path("students/create/", views.create_student),
    path("students/enrol/", views.enrol_class),
    path("students/<int:student_id>/", views.student_detail),
    # Courses and their students, through django-ninja (students/api.py).
    path("api/", api.urls),
]
