"""Views of the frameworks aorm integrates with (DRF with adrf, django-ninja, Channels).

Each module is its own URLconf (``@pytest.mark.urls``) and imports its
framework, so only the tests of that framework import it.
"""
