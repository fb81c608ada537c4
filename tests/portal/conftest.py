from browser import browser, screenshots

__all__ = ["browser", "screenshots"]
