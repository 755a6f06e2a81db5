from django.urls import path

from .api import TagListApi

app_name = "tags"

urlpatterns = [
    path("tags/", TagListApi.as_view(), name="tag-list"),
]
