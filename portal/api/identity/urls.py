from django.urls import path

from . import application_credentials, auth_views, grants, resources

app_name = "identity"

urlpatterns = [
    path("v3", auth_views.VersionView.as_view(), name="v3"),
    path("v3/", auth_views.VersionView.as_view()),
    path("v3/auth/tokens", auth_views.TokensView.as_view(), name="tokens"),
    path("v3/auth/projects", auth_views.AuthProjectsView.as_view(), name="auth-projects"),
    path("v3/auth/domains", auth_views.AuthDomainsView.as_view(), name="auth-domains"),
    path("v3/auth/catalog", auth_views.AuthCatalogView.as_view(), name="auth-catalog"),
    path("v3/projects", resources.ProjectsView.as_view(), name="projects"),
    path("v3/projects/<str:project_id>", resources.ProjectView.as_view(), name="project"),
    path(
        "v3/projects/<str:project_id>/users/<str:user_id>/roles",
        grants.ProjectUserRolesView.as_view(),
        name="project-user-roles",
    ),
    path(
        "v3/projects/<str:project_id>/users/<str:user_id>/roles/<str:role_id>",
        grants.ProjectUserRoleView.as_view(),
        name="project-user-role",
    ),
    path("v3/users", resources.UsersView.as_view(), name="users"),
    path("v3/users/<str:user_id>", resources.UserView.as_view(), name="user"),
    path("v3/users/<str:user_id>/projects", resources.UserProjectsView.as_view(), name="user-projects"),
    path(
        "v3/users/<str:user_id>/application_credentials",
        application_credentials.ApplicationCredentialsView.as_view(),
        name="application-credentials",
    ),
    path(
        "v3/users/<str:user_id>/application_credentials/<str:credential_id>",
        application_credentials.ApplicationCredentialView.as_view(),
        name="application-credential",
    ),
    path("v3/domains", resources.DomainsView.as_view(), name="domains"),
    path("v3/domains/<str:domain_id>", resources.DomainView.as_view(), name="domain"),
    path("v3/roles", resources.RolesView.as_view(), name="roles"),
    path("v3/roles/<str:role_id>", resources.RoleView.as_view(), name="role"),
    path("v3/role_assignments", resources.RoleAssignmentsView.as_view(), name="role-assignments"),
]
