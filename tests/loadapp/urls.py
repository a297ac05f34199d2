from django.urls import path

from . import views

urlpatterns = [
    path("query/", views.query),
    path("write/", views.write),
    path("between/", views.between),
    path("stats/", views.stats),
]
