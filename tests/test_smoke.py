import pytest

from mailer.engine import send_all
from mailer.models import Message

from .assertions import MailAssertions
from .samples import plain


@pytest.mark.django_db(transaction=True)
class TestSmoke(MailAssertions):
    def test_queue_and_send(self, smtp):
        self.server = smtp
        message = plain()
        assert message.send() == 1
        assert Message.objects.count() == 1
        counts = send_all()
        assert counts.sent == 1
        self.assert_delivered_once(message)
        self.assert_queue_empty()
