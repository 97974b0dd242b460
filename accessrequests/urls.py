from django.urls import path

from accessrequests.views import home

urlpatterns = [
    path("", home.home, name="home"),
]
