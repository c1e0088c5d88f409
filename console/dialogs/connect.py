"""File > Connect: a remote backend's URL and a token typed by the user."""

from __future__ import annotations

from PySide6.QtCore import QSettings
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
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Connect")
        buttons.accepted.connect(self._accept)
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

    def _accept(self) -> None:
        url = self.url.currentText().strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            self.show_error("The URL must start with http:// or https://")
            return
        if not self.token.text().strip():
            self.show_error("Enter a token.")
            return
        self.accept()

    def values(self) -> tuple[str, str, bool]:
        return (
            self.url.currentText().strip().rstrip("/"),
            self.token.text().strip(),
            self.remember.isChecked(),
        )
