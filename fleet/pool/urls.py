"""``/api/v1/pool/...``: included by ``fleet.urls``."""

from __future__ import annotations

from django.urls import path

from fleet.pool import views

urlpatterns = [
    path("pool/", views.PoolView.as_view(), name="pool"),
    path("pool/nodes/", views.NodeListView.as_view(), name="pool-node-list"),
    path("pool/nodes/<str:name>/", views.NodeDetailView.as_view(), name="pool-node-detail"),
    path(
        "pool/nodes/<str:name>/drain/",
        views.NodeDrainView.as_view(draining=True),
        name="pool-node-drain",
    ),
    path(
        "pool/nodes/<str:name>/undrain/",
        views.NodeDrainView.as_view(draining=False),
        name="pool-node-undrain",
    ),
    path("pool/deployments/", views.DeploymentListView.as_view(), name="pool-deployment-list"),
    path("pool/utilisation/", views.UtilisationView.as_view(), name="pool-utilisation"),
]
