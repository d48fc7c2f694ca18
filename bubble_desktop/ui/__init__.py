"""PySide6 user interface. May import bubble_desktop.core; core never imports this package."""
