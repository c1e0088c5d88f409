"""The Models page against a real backend: the list, a version's details, the try-it form."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
)
from pytestqt.qtbot import QtBot

from console.client import ApiClient
from console.context import ConsoleContext
from console.pages.models import ModelsPage
from console.tasks import TaskRunner
from console.widgets.feature_editor import feature_of
from console.widgets.tables import ReadOnlyTable
from tests.helpers import (
    TOY_SIGNATURE,
    ServerProcess,
    ToyDataDir,
    start_server,
)

TIMEOUT_MS = 15_000


def _toy_backend(data_dir: Path, toy_data_dir: ToyDataDir) -> tuple[ServerProcess, str]:
    token = toy_data_dir(data_dir)
    return start_server(data_dir), token


@pytest.fixture(scope="module")
def toy_server(
    tmp_path_factory: pytest.TempPathFactory, toy_data_dir: ToyDataDir
) -> Iterator[tuple[str, str]]:
    server, token = _toy_backend(tmp_path_factory.mktemp("models-page"), toy_data_dir)
    yield server.url, token
    server.stop()


def _open_page(qtbot: QtBot, url: str, token: str, tmp_path: Path) -> tuple[ModelsPage, TaskRunner]:
    tasks = TaskRunner()
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    page = ModelsPage(ConsoleContext(ApiClient(url, token), tasks, settings))
    qtbot.addWidget(page)
    page.resize(1400, 900)
    page.show()
    page.page_shown()
    qtbot.waitUntil(lambda: {"toy", "price"} <= set(page.models), timeout=TIMEOUT_MS)
    return page, tasks


@pytest.fixture
def page(qtbot: QtBot, toy_server: tuple[str, str], tmp_path: Path) -> Iterator[ModelsPage]:
    opened, tasks = _open_page(qtbot, *toy_server, tmp_path)
    yield opened
    opened.shutdown()
    tasks.shutdown()


def _cell(table: ReadOnlyTable, row: int, column: int) -> str:
    return table.text(row, column)


def _form(form: QFormLayout) -> dict[str, str]:
    """A details form as {label: value}."""
    values = {}
    for row in range(form.rowCount()):
        label, field = (
            item.widget() if item is not None else None
            for item in (
                form.itemAt(row, QFormLayout.ItemRole.LabelRole),
                form.itemAt(row, QFormLayout.ItemRole.FieldRole),
            )
        )
        assert isinstance(label, QLabel) and field is not None
        if not isinstance(field, QLabel | QLineEdit):  # a line with buttons beside it
            field = field.findChild(QLineEdit)
        assert isinstance(field, QLabel | QLineEdit)
        values[label.text()] = field.text()
    return values


def _row_of(page: ModelsPage, name: str) -> int:
    rows = [page.proxy.index(r, 0).data() for r in range(page.proxy.rowCount())]
    return rows.index(name)


def _click_model(qtbot: QtBot, page: ModelsPage, name: str) -> None:
    index = page.proxy.index(_row_of(page, name), 0)
    rect = page.model_view.visualRect(index)
    qtbot.mouseClick(page.model_view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert page.selected_model == name


def _send_and_wait(qtbot: QtBot, page: ModelsPage) -> None:
    panel = page.try_it
    panel.last_response = panel.last_error = None
    qtbot.mouseClick(panel.send_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: panel.last_response is not None or panel.last_error is not None,
        timeout=TIMEOUT_MS,
    )
    assert panel.send_button.isEnabled()


def test_lists_the_models_with_their_active_version(page: ModelsPage) -> None:
    listed = {
        page.proxy.index(r, 0).data(): (
            page.proxy.index(r, 1).data(),
            page.proxy.index(r, 2).data(),
        )
        for r in range(page.proxy.rowCount())
    }
    assert listed == {"price": ("regression", "1"), "toy": ("classification", "1")}
    assert "2 models" in page.status.text()
    assert page.model_view.focusPolicy() & Qt.FocusPolicy.TabFocus
    page.search.setText("TO")
    assert page.proxy.rowCount() == 1 and page.proxy.index(0, 0).data() == "toy"


def test_selecting_a_model_shows_its_versions_signature_and_checks(
    qtbot: QtBot,
    page: ModelsPage,
) -> None:
    _click_model(qtbot, page, "toy")
    assert page.name_label.text() == "toy"
    assert page.versions.row_count() == 1
    assert _cell(page.versions, 0, 0) == "1"
    assert "active" in _cell(page.versions, 0, 1)
    assert page.selected_version == "1"
    signature = page.version_details.signature
    names = [_cell(signature, r, 0) for r in range(signature.row_count())]
    assert names == [spec.name for spec in TOY_SIGNATURE]
    assert _cell(signature, 0, 1) == "float"
    assert _cell(signature, 0, 3) == "0" and _cell(signature, 0, 4) == "10,000"
    assert _cell(signature, 2, 5) == "DE, FR, US"
    assert _cell(signature, 4, 2).startswith("no")
    validity = _form(page.version_details.validity_form)
    assert validity["Quality metric"] == "accuracy"
    assert validity["Acceptable range"] == "0.7 – 1"
    assert validity["End-to-end examples"] == "10"
    assert validity["Confidence-set rows"] == "100"
    # Every header explains itself to someone who is not an ML engineer.
    for table in (page.versions, signature):
        header = table.model()
        for column in range(header.columnCount()):
            tip = header.headerData(column, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
            assert tip, f"column {column} of {table.toolTip()!r} does not explain itself"
    registration = _form(page.version_details.registration_form)
    sha = registration["SHA-256"]
    assert len(sha) == 64
    # The whole fingerprint selects at once and copies in one click.
    details = page.version_details
    details.setCurrentIndex(1)
    details.sha.selectAll()
    assert details.sha.selectedText() == sha
    assert details.copy_sha.isVisible()
    details.copy_sha.click()
    assert QGuiApplication.clipboard().text() == sha
    # Trust in words, classes by name.
    assert registration["Trusted by"] == "Safe format (skops): no trust needed"
    assert _cell(page.versions, 0, 6) == "Safe format (skops): no trust needed"
    assert registration["Classes"] == "legit (class 0), fraud (class 1)"
    # The measured score beside its acceptable range, from the deployment gate's report.
    qtbot.waitUntil(
        lambda: "measured" in _form(page.version_details.validity_form)["Measured score"],
        timeout=TIMEOUT_MS,
    )
    measured = _form(page.version_details.validity_form)["Measured score"]
    assert " (inside 0.7 – 1), measured " in measured and "by the deploy gate" in measured


def test_try_it_with_the_example_gives_a_prediction_and_probabilities(
    qtbot: QtBot,
    page: ModelsPage,
) -> None:
    _click_model(qtbot, page, "toy")
    panel = page.try_it
    example = page.models["toy"].versions[0].example_input
    tensors = {tensor["name"]: tensor for tensor in panel.build_inputs()}
    assert {name: tensor["data"] for name, tensor in tensors.items()} == {
        name: [value] for name, value in example.items()
    }
    assert tensors["amount"]["datatype"] == "FP64" and tensors["amount"]["shape"] == [1]
    assert tensors["count"]["datatype"] == "INT64"
    assert tensors["online"]["datatype"] == "BOOL"
    assert tensors["country"]["datatype"] == "BYTES"

    _send_and_wait(qtbot, page)
    assert panel.last_error is None and panel.last_response is not None
    assert panel.result_box.isVisible() and not panel.error_label.isVisible()
    assert panel.result_title.text().startswith("Predicted class: ")
    assert "legit" in panel.result_title.text() or "fraud" in panel.result_title.text()
    assert "legit" in panel.probabilities.text() and "fraud" in panel.probabilities.text()
    outputs = {output.name: output.data for output in panel.last_response.outputs}
    probabilities = outputs["predict_proba"]
    assert len(probabilities) == 2 and sum(probabilities) == pytest.approx(1)
    assert panel.probabilities.isVisible()
    for probability in probabilities:
        assert f"{probability:.1%}" in panel.probabilities.text()
    assert f"{max(probabilities):.1%} probability" in panel.result_title.text()
    parameters = panel.last_response.parameters or {}
    assert "version <b>1</b>" in panel.result_meta.text()
    assert parameters["request_id"] in panel.result_meta.text()


def test_an_out_of_range_value_shows_the_backends_error_on_that_field(
    qtbot: QtBot,
    page: ModelsPage,
) -> None:
    _click_model(qtbot, page, "toy")
    panel = page.try_it
    amount = panel.editors["amount"]
    assert isinstance(amount.editor, QDoubleSpinBox)
    amount.editor.setValue(-5)  # the editor does not clamp to the declared range
    assert amount.editor.value() == -5 and "outside" in amount.hint.text()

    _send_and_wait(qtbot, page)
    assert panel.last_response is None and panel.error_label.isVisible()
    assert "amount" in panel.error_label.text()
    assert "below the allowed minimum" in panel.error_label.text()
    assert panel.highlighted_feature == "amount"
    assert amount.frame.invalid is True
    assert not panel.result_box.isVisible()

    # Fixing the value clears the highlight; the example brings everything back.
    amount.editor.setValue(5)
    assert amount.frame.invalid is False and panel.highlighted_feature is None
    panel.reset_button.click()
    assert not panel.error_label.isVisible()
    _send_and_wait(qtbot, page)
    assert panel.last_error is None


def test_an_unknown_category_and_a_huge_count_name_their_field(
    qtbot: QtBot,
    page: ModelsPage,
) -> None:
    _click_model(qtbot, page, "toy")
    panel = page.try_it
    country = panel.editors["country"].editor
    assert isinstance(country, QComboBox)
    country.setCurrentText("XX")
    _send_and_wait(qtbot, page)
    assert panel.highlighted_feature == "country"
    assert "unknown category" in panel.error_label.text()
    assert panel.editors["country"].frame.invalid is True

    panel.reset_to_example()
    count = panel.editors["count"].editor
    assert isinstance(count, QSpinBox)
    count.setValue(-1)
    _send_and_wait(qtbot, page)
    assert panel.highlighted_feature == "count"
    assert panel.editors["amount"].frame.invalid is False


def test_an_optional_feature_can_be_left_out(qtbot: QtBot, page: ModelsPage) -> None:
    _click_model(qtbot, page, "toy")
    panel = page.try_it
    note = panel.editors["note"]
    assert note.include is not None
    note.include.setChecked(False)
    assert "note" not in {tensor["name"] for tensor in panel.build_inputs()}
    _send_and_wait(qtbot, page)
    assert panel.last_error is None


def test_a_regression_model_shows_a_value(qtbot: QtBot, page: ModelsPage) -> None:
    _click_model(qtbot, page, "price")
    panel = page.try_it
    assert set(panel.editors) == {"x1", "x2"}
    _send_and_wait(qtbot, page)
    assert panel.last_error is None
    assert panel.result_title.text().startswith("Predicted value:")
    assert not panel.probabilities.isVisible()
    assert "Tolerance" in _form(page.version_details.validity_form)


def test_refresh_keeps_the_selection_and_what_was_typed(qtbot: QtBot, page: ModelsPage) -> None:
    _click_model(qtbot, page, "toy")
    amount = page.try_it.editors["amount"].editor
    assert isinstance(amount, QDoubleSpinBox)
    amount.setValue(777.25)
    loaded = page.loaded_at
    qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.loaded_at != loaded and not page.loading, timeout=TIMEOUT_MS)
    assert page.selected_model == "toy" and page.name_label.text() == "toy"
    assert page.try_it.editors["amount"].editor is amount and amount.value() == 777.25


def test_a_stopped_backend_gives_a_clear_message_and_no_crash(
    qtbot: QtBot, tmp_path: Path, toy_data_dir: ToyDataDir
) -> None:
    server, token = _toy_backend(tmp_path / "data", toy_data_dir)
    tasks = None
    try:
        page, tasks = _open_page(qtbot, server.url, token, tmp_path)
        _click_model(qtbot, page, "toy")
        server.stop()
        panel = page.try_it
        _send_and_wait(qtbot, page)
        assert panel.error_label.isVisible()
        assert "No answer from the backend" in panel.error_label.text()
        assert "cannot reach the backend" in panel.error_label.text()
        assert panel.highlighted_feature is None

        page.refresh()
        qtbot.waitUntil(lambda: not page.loading, timeout=TIMEOUT_MS)
        assert "Could not load the models" in page.status.text()
        assert set(page.models) == {"toy", "price"} and page.proxy.rowCount() == 2
        page.connection_changed(False)
        assert "unreachable" in page.status.text()
        page.shutdown()
    finally:
        if tasks is not None:
            tasks.shutdown()
        server.stop()


@pytest.mark.parametrize(
    ("field", "feature"),
    [
        ("inputs.rows[0].amount", "amount"),
        ("inputs[2](country).datatype", "country"),
        ("inputs.rows[0].a.b", "a.b"),
        ("inputs", None),
        (None, None),
    ],
)
def test_the_field_of_an_error_maps_to_its_feature(field: str | None, feature: str | None) -> None:
    assert feature_of(field, ["amount", "country", "b", "a.b"]) == feature


def test_copy_as_curl_gives_a_command_that_reproduces_the_request(
    qtbot: QtBot, page: ModelsPage, toy_server: tuple[str, str]
) -> None:
    import shlex

    import requests
    from PySide6.QtGui import QGuiApplication

    _click_model(qtbot, page, "toy")
    panel = page.try_it
    qtbot.mouseClick(panel.copy_button, Qt.MouseButton.LeftButton)
    words = shlex.split(QGuiApplication.clipboard().text())
    assert words[:3] == ["curl", "-X", "POST"]
    url = words[3]
    headers = dict(words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H")
    body = words[words.index("-d") + 1]
    # Replayed as a terminal would, with the token the command asks for in $SERVEDECK_TOKEN.
    assert headers["Authorization"] == "Bearer $SERVEDECK_TOKEN"
    headers["Authorization"] = f"Bearer {toy_server[1]}"
    answer = requests.post(url, data=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert {output["name"] for output in answer.json()["outputs"]} >= {"predict"}
