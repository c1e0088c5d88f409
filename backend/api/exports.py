"""The retraining export: a preview of its counts, and the export itself streamed as a ZIP."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from backend.api.deps import CurrentPrincipal, CurrentWorkspace
from backend.api.errors import ERRORS
from backend.auth.tokens import require
from backend.feedback.export import Export
from backend.schemas import ExportPreview, ExportRequest

router = APIRouter(prefix="/api/v1", tags=["Feedback"], responses=ERRORS)

ZIP_DOCUMENTATION = {
    200: {
        "description": "A ZIP with the data file (data.parquet or data.csv) and then "
        "manifest.json (counts, filters, columns, the data file's sha256), streamed as it is "
        "written. X-Export-Rows-Read: the log rows the export reads (before its label "
        "filters), X-Export-Page-Rows: rows read per page (one Parquet row group each).",
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _export(
    body: ExportRequest, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> Export:
    # Every row's features: engineers and admins only, and within the token's models.
    require(principal, "export", body.model)
    return Export(
        workspace.sessions,
        workspace.registry.get_model(body.model),
        body,
        created_by=principal.name,
    )


@router.post("/exports/preview", response_model=ExportPreview)
def preview_export(
    body: ExportRequest, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> ExportPreview:
    """What the export with these filters holds, before it runs: rows per label source and
    class, the time range, the columns, and the log rows it reads (a progress total)."""
    return _export(body, workspace, principal).preview()


@router.post(
    "/exports",
    response_class=StreamingResponse,
    responses=ZIP_DOCUMENTATION,  # type: ignore[arg-type]
)
def run_export(
    body: ExportRequest, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> StreamingResponse:
    """The export as one ZIP download (data file, then manifest.json), written page by page:
    a large export never sits in memory."""
    export = _export(body, workspace, principal)
    name = f"{body.model}-export.zip"
    return StreamingResponse(
        export.zip_stream(),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Export-Rows-Read": str(export.rows_to_read()),
            "X-Export-Page-Rows": str(export.page_rows),
        },
    )
