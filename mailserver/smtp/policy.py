"""The SMTP door rules, as the SMTP front imports them; they live in delivery.policy, shared with submit().

They moved so that `delivery` (the one submit path, which checks senders and
From headers for the webmail and bridges too) need not import `mailserver`:
the dependency direction is mailserver -> delivery -> mailboxes.
"""

from delivery.policy import *  # noqa: F401,F403
from delivery.policy import __all__  # noqa: F401
