from django.urls import path
from students import views

urlpatterns = [
    path("students/", views.student_list),
    path("example/", views.example_view),
    path("students/create/", views.create_student),
    path("students/enrol/", views.enrol_class),
    path("students/<int:student_id>/", views.student_detail),
]
