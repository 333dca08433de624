"""Email service providers for the tests: local APIs that answer as Postmark, Mailgun and
Amazon SES do, anymail's real backends configured to send through them, and the
providers' tracking webhook payloads.

* ``server``: the local HTTP server (scripted answers, every request recorded).
* ``postmark``, ``mailgun``, ``ses``: each provider's request reading and catalogue of
  documented answers (``postmark.inactive_recipient(...)``, ``ses.throttled()``...).
* ``config`` and ``fixtures``: Django configured in the MAILERS or the legacy style.
* ``webhooks``: tracking payloads and posting them to anymail's URLs (``urls``).

What anymail 15.2 does, as tests/test_providers_infra.py shows it (Django 5.2 and 6.1;
anymail declares Django up to 6.0 but takes 6.1's MAILERS: ``alias``, InvalidMailer):

Exceptions
  ``AnymailRequestsAPIError`` (Postmark, Mailgun) is an ``AnymailAPIError`` *and* a
  ``requests.HTTPError``, so an ``OSError``. For an HTTP error answer ``status_code`` is
  the HTTP status and ``response`` the ``requests.Response`` (``.json()``, ``.text``);
  ``str()`` ends with "<ESP> API response <status> (<reason>): <body>". For a hang past
  ``REQUESTS_TIMEOUT`` the exception is also a ``requests.ReadTimeout``, for a dropped
  or refused connection a ``requests.ConnectionError``; then ``status_code`` and
  ``response`` are None and ``__cause__`` is the requests exception.
  Amazon SES raises plain ``AnymailAPIError`` (not an OSError), ``status_code`` None:
  for an error answer ``response`` is botocore's dict (``["Error"]["Code"]``,
  ``["Error"]["Message"]``, ``["ResponseMetadata"]["HTTPStatusCode"]``) and
  ``__cause__`` a ``ClientError``; a hang gives ``__cause__`` botocore's
  ``ReadTimeoutError``, a dropped connection ``ConnectionClosedError``, ``response`` None.
  ``AnymailRecipientsRefused`` (not an HTTPError) is raised only when *every* recipient
  is "invalid" or "rejected": ``status_code`` None, ``response`` the 422 response.
  In every case ``message.anymail_status.recipients`` maps each address to
  ``AnymailRecipientStatus(message_id, status)`` when the answer was parsed (it stays
  empty for an HTTP error, a timeout or a dropped connection).

Answers (status per recipient, or what is raised)
  Postmark 200 OK: all "sent", one MessageID (a UUID). 200 "delivery may be delayed":
  "queued". 200 "Message OK, but will not deliver to these inactive addresses: b":
  b "rejected" (message_id None), the others "sent", no exception. Batch
  (``/email/batch``, used for ``merge_data``/``merge_metadata``): a MessageID per
  recipient; a per-message ErrorCode 406 makes that recipient "rejected".
  422 ErrorCode 406 (all inactive): ``AnymailRecipientsRefused``, all "rejected".
  422 ErrorCode 300 "Invalid 'To' address: 'a'": a alone -> ``AnymailRecipientsRefused``
  ("invalid"); a among others -> *no exception*, a "invalid", the others "unknown",
  although Postmark sent nothing. 422 ErrorCode 300 about anything else (From...), 401
  (ErrorCode 10), 429, 500, 503 (ErrorCode 100): ``AnymailRequestsAPIError`` with that
  ``status_code``; Postmark's ErrorCode in ``response.json()["ErrorCode"]``.
  Mailgun 200: all "queued" under one id "<...@domain>". Any 4xx/5xx, including a 400
  for one invalid address among valid ones: ``AnymailRequestsAPIError``; a 404
  "Domain not found" is reworded "Unknown sender domain ...".
  Amazon SES 200: all "queued" under one MessageId. TooManyRequestsException 429 (rate
  and daily quota alike: told apart by the message), MessageRejected,
  BadRequestException (one bad address refuses all), AccountSuspendedException,
  SendingPausedException (400), UnrecognizedClientException 403, InternalFailure 500,
  ServiceUnavailable 503: ``AnymailAPIError`` as above.
  requests never resends. boto3 does, by default (standard mode, 3 attempts) for
  throttling, 5xx, timeouts and dropped connections: after a hang SES may get the
  message twice. The fixtures set ``total_max_attempts: 1``.

Configuration
  MAILERS ``OPTIONS`` are the backend's keyword arguments: anymail's setting names in
  lower case without the provider prefix (Postmark ``server_token``, ``api_url``,
  ``requests_timeout``; Mailgun ``api_key``, ``api_url``; SES ``session_params``,
  ``client_params``). A missing one raises ``AnymailInvalidMailer`` (an
  ``AnymailConfigurationError``, Django's ``InvalidMailer``, an ImproperlyConfigured)
  when the backend is made; an unknown one Django's ``InvalidMailer``. The legacy style
  reads ``ANYMAIL = {"POSTMARK_SERVER_TOKEN": ..., "REQUESTS_TIMEOUT": ...}`` and raises
  ``AnymailConfigurationError``. Webhooks read ``ANYMAIL`` in both styles
  (``WEBHOOK_SECRET``, ``MAILGUN_WEBHOOK_SIGNING_KEY``).

Tracking webhooks (event_type, reject_reason)
  The event's ``message_id`` is the send's ``anymail_status.message_id`` (Postmark
  MessageID; Mailgun's id with the <> anymail adds back; SES mail.messageId), its
  ``esp_event`` the posted JSON (for SES the SES event inside the SNS Message).
  Postmark: HardBounce and SoftBounce ("bounced", "bounced"), Transient ("deferred",
  None), SpamComplaint ("complained", "spam"), SubscriptionChange ManualSuppression
  ("unsubscribed", "unsubscribed"), Delivery ("delivered", None).
  Mailgun: failed permanent ("bounced", "bounced"), failed temporary ("deferred",
  "other"), complained ("complained", None), unsubscribed ("unsubscribed", None),
  delivered ("delivered", None).
  SES: Bounce Permanent and Transient ("bounced", "bounced"; description "Transient:
  MailboxFull" tells them apart), Complaint ("complained", "spam"), Subscription
  (unsubscribe) ("unknown", None; "Unknown SES eventType 'Subscription'"), Delivery
  ("delivered", None).
  So event_type alone is not enough: Postmark SoftBounce and SES Transient bounces are
  "bounced", SES unsubscribes "unknown".
  A wrong basic-auth secret or Mailgun signature: HTTP 400, no signal. SES: a post
  without credentials gets a 401 challenge; SNS headers not matching the body: 400;
  the SNS signature is not verified.
"""
