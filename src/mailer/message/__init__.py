"""The message room: a stored message in, the bytes to send out.

Pure functions of the stored document (no database, no connection):
:mod:`mailer.message.render` turns a document made by :mod:`mailer.storage`
into the exact bytes Django's SMTP backend would send, without building
Django's ``EmailMessage``. The codec (``storage``) and the enqueue checks
(``validation``) are to move here too (see the package layout design).
"""
