"""File > Connect: a remote backend's URL and a token typed by the user.

The dialog stays open until the backend has accepted the token: Connect emits ``submitted``,
whoever opened the dialog checks the token and answers ``verified()`` (the dialog closes) or
``rejected_with(reason)`` (the reason is shown and the user can correct the token).
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
)

from console.credentials import keyring_available, recent_connections, stored_token


class ConnectDialog(QDialog):
    submitted = Signal(str, str)  # url, token: check them, then verified() or rejected_with()

    def __init__(self, settings: QSettings, url: str = "", parent: object = None):
        super().__init__(parent)  # type: ignore[arg-type]
        self.setWindowTitle("Connect to a ServeDeck backend")
        self.settings = settings
        self.url = QComboBox()
        self.url.setEditable(True)
        self.url.addItems(recent_connections(settings))
        if url:
            self.url.setCurrentText(url)
        self.url.setToolTip("The backend's address, e.g. http://models.example.com:8080")
        self.url.lineEdit().setPlaceholderText("http://host:port")
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("sdk_…")
        self.token.setToolTip("A token created with 'servedeck-server tokens create'.")
        has_keyring = keyring_available()
        self.remember = QCheckBox(
            "Remember the token in the system keyring"
            if has_keyring
            else "Remember the token in the console's settings file (no keyring found)"
        )
        self.remember.setChecked(has_keyring)
        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()
        form = QFormLayout()
        form.addRow("Backend URL", self.url)
        form.addRow("Token", self.token)
        form.addRow("", self.remember)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.connect_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.connect_button.setText("Connect")
        self.connect_button.setToolTip("Checks the token with the backend before connecting.")
        buttons.accepted.connect(self._submit)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.url.currentTextChanged.connect(self._fill_token)
        self._fill_token(self.url.currentText())
        self.resize(520, self.sizeHint().height())

    def _fill_token(self, url: str) -> None:
        token = stored_token(self.settings, url.strip()) if url.strip() else None
        if token:
            self.token.setText(token)

    def show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()

    def _submit(self) -> None:
        url, token, _remember = self.values()
        if not url.startswith(("http://", "https://")):
            self.show_error("The URL must start with http:// or https://")
            return
        if not token:
            self.show_error("Enter a token.")
            return
        self.error.hide()
        self.connect_button.setText("Checking…")
        self._set_editable(False)
        self.submitted.emit(url, token)

    def verified(self) -> None:
        """The backend accepted the token: close as accepted."""
        self._set_editable(True)
        self.accept()

    def rejected_with(self, reason: str) -> None:
        """The token or the address did not work: say why and let the user correct it."""
        self._set_editable(True)
        self.show_error(reason)
        self.token.setFocus()
        self.token.selectAll()

    def _set_editable(self, editable: bool) -> None:
        if editable:
            self.connect_button.setText("Connect")
        for widget in (self.url, self.token, self.remember, self.connect_button):
            widget.setEnabled(editable)

    def values(self) -> tuple[str, str, bool]:
        return (
            self.url.currentText().strip().rstrip("/"),
            self.token.text().strip(),
            self.remember.isChecked(),
        )
