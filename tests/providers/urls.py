"""The test suite's URLs plus anymail's webhook URLs (``/anymail/<provider>/tracking/``),
as a site using anymail's tracking webhooks includes them."""

from django.urls import include, path

from tests.urls import urlpatterns as base_urlpatterns

urlpatterns = [*base_urlpatterns, path("anymail/", include("anymail.urls"))]
