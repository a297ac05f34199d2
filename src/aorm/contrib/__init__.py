"""Integrations with the frameworks Django users write async views with.

One module per framework, each imported only by the code that uses it (aorm
itself imports none of these frameworks):

- :mod:`aorm.contrib.drf`: Django REST framework serializers, and adrf's
  async views, with validation and representation run natively;
- :mod:`aorm.contrib.ninja`: django-ninja's response schemas resolved natively;
- :mod:`aorm.contrib.strawberry`: strawberry-graphql-django's resolvers that
  may query, run natively (a schema extension, ``NativeORM``);
- :mod:`aorm.contrib.debug_toolbar`: django-debug-toolbar's SQL panel, seeing
  the statements of async views.

Channels needs no module: an async consumer awaits the ORM like any async
code (see docs/frameworks.md, "With Channels").

The framework integrations run the framework's own synchronous code
unchanged through ``aorm.run`` (the bridge): validators, nested serializers,
related fields and schema resolvers that touch the database run on the event
loop, on the async driver, with no worker thread.
"""
