"""Load devconsole's capture into any mitmproxy tool:

    mitmdump -s addons/devconsole_addon.py [--set devconsole_tap=PATH]

then ``devconsole attach`` (or ``devconsole tail``) to watch the traffic.
"""

from devconsole.capture import Capture

addons = [Capture()]
