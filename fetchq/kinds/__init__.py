"""What a recipe's kind adds to a run: how an input row becomes a job, which
job function runs it, and what output record a finished job leaves.

:class:`~fetchq.run.Run` is the same for every kind: input streamed into the
durable store, the store feeding the queue, records written from committed
state.  A :class:`Kind` is the small part that differs:

- :class:`~fetchq.kinds.fetch.FetchKind`: one URL per row, lanes by host.
- :class:`~fetchq.kinds.sms.SmsKind`: one message per row, lanes by sender,
  every sent message's sid committed at once.
- :class:`~fetchq.kinds.api.ApiKind`: one API call per row and page, lanes
  by endpoint, the next page queued as the previous one completes.
"""

from fetchq.kinds.base import BadRow, Kind

__all__ = ["BadRow", "Kind"]
