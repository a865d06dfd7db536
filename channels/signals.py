"""What channels' own services announce, for channels.tasks to act on.

A service that wants work done in the background says what happened; the tasks module listens and
enqueues. The services then never import the tasks module, which imports them: no import circle.
Both are sent after commit (transaction.on_commit), with the account's id.
"""

from django.dispatch import Signal

# OutboxMessage rows were queued (or released for a retry) for an account: the relay should run.
outbox_messages_queued = Signal()  # account_id

# New webhook events were stored for an account: they should be processed.
webhook_events_stored = Signal()  # account_id

# The channel answered an outbox message for good (sent, or parked): message_id, kind. Sent outside any
# transaction, right after the message is marked. The returns app records a refund's answer from it.
outbox_message_answered = Signal()  # message_id, kind

# Channel accounts were written in bulk (a queryset's update): what caches accounts forgets them (channels.accounts).
# Sent at once, in the writing process; ChannelAccount.save and delete send Django's post_save and post_delete.
channel_accounts_updated = Signal()
