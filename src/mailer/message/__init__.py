"""The message room: a message in, a stored document or the bytes to send out.

Pure functions (no database, no connection): :mod:`mailer.message.codec` turns an
``EmailMessage`` into the JSON document stored in the queue and back
(:mod:`~mailer.message.parts` for values and MIME parts,
:mod:`~mailer.message.summary` for display); :mod:`mailer.message.validation`
checks a message before it is queued and is the one home of the control headers
and of ``address_key``; :mod:`mailer.message.render` turns a document into the
exact bytes Django's SMTP backend would send; :mod:`mailer.message.pickles` reads
django-mailer's pickled rows for the migration.
"""
