"""Load devconsole's capture into any mitmproxy tool:

    mitmdump -s addons/devconsole_addon.py [--set devconsole_tap=PATH]
    mitmdump -s addons/devconsole_addon.py --set devconsole_publish=redis://127.0.0.1:6379/0

then ``devconsole attach`` (or ``devconsole tail``) to watch the traffic.
"""

from devconsole.capture import Capture
from devconsole.scale.addon import ScaleOut

_capture = Capture()
addons = [_capture, ScaleOut(_capture)]
