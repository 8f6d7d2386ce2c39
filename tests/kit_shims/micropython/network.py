"""Stand-in for MicroPython's `network`: a station interface that is connected as soon as it is asked to be."""

STA_IF = 0
AP_IF = 1


class WLAN:
    def __init__(self, interface: int = STA_IF) -> None:
        self._active = False
        self._connected = False

    def active(self, on: bool | None = None) -> bool:
        if on is not None:
            self._active = on
        return self._active

    def connect(self, ssid: str, password: str) -> None:
        print(f"[shim] Wi-Fi {ssid}", flush=True)
        self._connected = self._active

    def isconnected(self) -> bool:
        return self._connected

    def ifconfig(self) -> tuple[str, str, str, str]:
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
