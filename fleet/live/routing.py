from django.urls import path

from fleet.live.consumers import SiteLiveConsumer

websocket_urlpatterns = [
    path("ws/sites/<str:site_id>/", SiteLiveConsumer.as_asgi()),
]
