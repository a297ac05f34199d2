"""Settings django-stubs' mypy plugin loads to know the sample's models."""

SECRET_KEY = "aorm-typing-sample"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "aorm", "tests.typing_sample"]
DATABASES = {"default": {"ENGINE": "aorm.backends.sqlite3", "NAME": ":memory:"}}
