from django.urls import path

from accessrequests.api import scim

urlpatterns = [
    path("Users", scim.Users.as_view(), name="scim_users"),
    path("Users/<str:scim_id>", scim.User.as_view(), name="scim_user"),
    path("Groups", scim.Groups.as_view(), name="scim_groups"),
    path("Groups/<str:scim_id>", scim.Group.as_view(), name="scim_group"),
    path("ServiceProviderConfig", scim.ServiceProviderConfig.as_view(), name="scim_config"),
    path("ResourceTypes", scim.ResourceTypes.as_view(), name="scim_resource_types"),
]
