"""Benchmark 1's report: medians, paired per-round ratios against targets, and the tables."""

from __future__ import annotations

import statistics
from typing import Any

from tests.bench.latency import p99_pair_at_common_rate
from tests.bench.loadgen import generator_name
from tests.bench.serving_bench import BASELINE, Config, Outcome
from tests.bench.tables import fmt, format_table, short_error

MONITORING_TARGET = 0.95  # req/s with monitoring on at least this fraction of off
THROUGHPUT_TARGET = 0.8  # servedeck req/s at least this fraction of bare
P99_TARGET = 2.0  # servedeck p99 at most this multiple of bare
BASELINE_RPS_TARGET = 0.95  # current req/s at least this fraction of the baseline's
BASELINE_P99_TARGET = 1 / 0.95  # current p99 at most this multiple of the baseline's
_BASELINE_TARGETS = (BASELINE_RPS_TARGET, BASELINE_P99_TARGET)
ROUNDS_NOTE = (
    "\nratio: median of the per-round ratios; rounds: their quartiles (the middle half of"
    "\nrounds), how far one round's ratio strays on this machine. More rounds"
    "\n(BENCH_REPEATS) narrow the median's uncertainty, not that spread."
    "\np99 at 'common rate': at one connection wrk corrects each run's latencies at that"
    "\nrun's own rate, which counts every stall more often against the faster server; both"
    "\nservers' raw times are corrected here at the slower one's rate instead. 'wrk's' is the"
    "\nratio of wrk's own p99s. With more connections the script cannot pair a response with"
    "\nits request, and wrk's p99s are compared (where the two rates are close, so is the bias)."
)


# ---------------------------------------------------------------------- summarising


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(outcome: Outcome) -> list[dict[str, Any]]:
    """One entry per (model, server, concurrency), medians over repeats."""
    keys = sorted({(r.model, r.server, r.concurrency) for r in outcome.runs})
    summary = []
    for model, server, concurrency in keys:
        runs = [
            r
            for r in outcome.runs
            if (r.model, r.server, r.concurrency) == (model, server, concurrency)
        ]
        results = [r.result for r in runs if r.result is not None]
        errors = [r.error for r in runs if r.error]
        samples = [res.error_sample for res in results if res.error_sample]
        summary.append(
            {
                "model": model,
                "server": server,
                "concurrency": concurrency,
                "runs_ok": len(results),
                "runs": len(runs),
                "rps": _median([res.rps for res in results]),
                "rps_all": [round(res.rps, 1) for res in results],
                # Per round, for the paired ratios.
                "rps_by_round": {r.repeat: r.result.rps for r in runs if r.result},
                "p99_by_round": {r.repeat: r.result.p99_ms for r in runs if r.result},
                # Raw times and rate per round (one connection), for p99 at a common rate;
                # left out of the JSON.
                "times_by_round": {
                    r.repeat: (r.result.latencies_ms, r.result.rps)
                    for r in runs
                    if r.result and r.result.latencies_ms
                },
                "p50_ms": _median([res.p50_ms for res in results]),
                "p99_ms": _median([res.p99_ms for res in results]),
                "errors": sum(res.errors for res in results),
                "server_cpu_ms_per_1k": _median([r.server_cpu_ms_per_1k for r in runs]),
                "writer_cpu_ms_per_1k": _median([r.writer_cpu_ms_per_1k for r in runs]),
                "error": errors[0] if errors else (samples[0] if samples else None),
            }
        )
    return summary


def ratios(
    summary: list[dict[str, Any]],
    reference: str = "bare",
    measured: str = "servedeck",
    rps_target: float = THROUGHPUT_TARGET,
    p99_target: float = P99_TARGET,
) -> list[dict[str, Any]]:
    """``measured`` over ``reference`` per model and concurrency, checked against targets: the
    median of the ratios of the rounds where both ran (see the module docstring)."""
    index = {(s["model"], s["server"], s["concurrency"]): s for s in summary}
    out = []
    for model, concurrency in sorted({(s["model"], s["concurrency"]) for s in summary}):
        bare = index.get((model, reference, concurrency), {})
        deck = index.get((model, measured, concurrency), {})
        rps_ratio = _paired_ratio(bare.get("rps_by_round"), deck.get("rps_by_round"))
        rps_spread = _middle_half(bare.get("rps_by_round"), deck.get("rps_by_round"))
        wrk_p99_ratio = _paired_ratio(bare.get("p99_by_round"), deck.get("p99_by_round"))
        p99_basis = "wrk"
        reference_p99s, measured_p99s = bare.get("p99_by_round"), deck.get("p99_by_round")
        common = _p99_at_common_rate(bare.get("times_by_round"), deck.get("times_by_round"))
        if common is not None:
            p99_basis = "common rate"
            reference_p99s, measured_p99s = common
        p99_ratio = _paired_ratio(reference_p99s, measured_p99s)
        p99_spread = _middle_half(reference_p99s, measured_p99s)
        out.append(
            {
                "model": model,
                "concurrency": concurrency,
                "throughput_ratio": rps_ratio,
                "throughput_ok": None if rps_ratio is None else rps_ratio >= rps_target,
                "throughput_middle_half": rps_spread,
                "p99_middle_half": p99_spread,
                "p99_ratio": p99_ratio,
                "p99_ok": None if p99_ratio is None else p99_ratio <= p99_target,
                # What the p99s compared are: wrk's own (each corrected at its own rate), or
                # both corrected at the slower server's rate (see tests.bench.latency).
                "p99_basis": p99_basis,
                "wrk_p99_ratio": wrk_p99_ratio,
                "reference_rps": bare.get("rps"),
                "measured_rps": deck.get("rps"),
                "reference_p99_ms": _median(list((reference_p99s or {}).values())),
                "measured_p99_ms": _median(list((measured_p99s or {}).values())),
            }
        )
    return out


def _p99_at_common_rate(
    reference: dict[int, tuple[list[float], float]] | None,
    measured: dict[int, tuple[list[float], float]] | None,
) -> tuple[dict[int, float | None], dict[int, float | None]] | None:
    """Per round, both servers' p99 from their raw times, corrected at the same rate; None
    when no round has raw times on both sides (more than one connection, or no wrk)."""
    reference, measured = reference or {}, measured or {}
    reference_p99s: dict[int, float | None] = {}
    measured_p99s: dict[int, float | None] = {}
    for round_, (reference_ms, reference_rps) in reference.items():
        if round_ not in measured:
            continue
        measured_ms, measured_rps = measured[round_]
        pair = p99_pair_at_common_rate(reference_ms, reference_rps, measured_ms, measured_rps)
        if pair is not None:
            reference_p99s[round_], measured_p99s[round_] = pair
    return (reference_p99s, measured_p99s) if reference_p99s else None


def _per_round_ratios(
    reference: dict[int, float | None] | None, measured: dict[int, float | None] | None
) -> list[float]:
    """measured / reference of each round where both have a value."""
    reference, measured = reference or {}, measured or {}
    pairs = []
    for round_, ref in reference.items():
        value = measured.get(round_)
        if ref and value is not None:
            pairs.append(value / ref)
    return pairs


def _paired_ratio(
    reference: dict[int, float | None] | None, measured: dict[int, float | None] | None
) -> float | None:
    """Median over rounds of measured / reference, from the rounds where both have a value."""
    pairs = _per_round_ratios(reference, measured)
    return statistics.median(pairs) if pairs else None


def _middle_half(
    reference: dict[int, float | None] | None, measured: dict[int, float | None] | None
) -> str:
    """The per-round ratios' quartiles: how far one round's ratio strays on this machine."""
    pairs = _per_round_ratios(reference, measured)
    if len(pairs) < 4:
        return "-"
    low, _, high = statistics.quantiles(pairs, n=4)
    return f"{low:.2f}-{high:.2f}"


def _ratio(value: float | None) -> str:
    return fmt(value, 2) + "x" if value else "-"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("ok" if ok else "MISSED")


def render(outcome: Outcome, config: Config) -> str:
    if outcome.error:
        return format_table("Serving overhead", ["error"], [[short_error(outcome.error, 200)]])
    summary = summarise(outcome)
    title = (
        f"Serving overhead: medians of {config.repeats} round(s), {config.seconds:g} s each "
        f"after {config.warmup:g} s warm-up, one row per request"
    )
    rows = [
        [
            s["model"],
            s["server"],
            s["concurrency"],
            fmt(s["rps"]),
            " / ".join(f"{v:.0f}" for v in s["rps_all"]) or "-",
            fmt(s["p50_ms"], 2),
            fmt(s["p99_ms"], 2),
            s["errors"],
            short_error(s["error"]) if s["error"] else "",
        ]
        for s in summary
    ]
    headers = ["model", "server", "conc", "req/s", "req/s per round", "p50 ms", "p99 ms"]
    table = format_table(title, [*headers, "errors", "note"], rows)
    if generator_name() == "wrk":
        # Without this note the wrk and aiohttp percentiles look like the same statistic.
        table += (
            "\nwrk corrects latencies for coordinated omission: a server stall of T ms adds"
            "\nsamples as if requests had kept arriving at the measured rate, so a few long"
            "\npauses (e.g. a full GC) dominate p99 even at 1 connection."
        )
    table += (
        "\nRatios below are medians of per-round ratios (both sides seconds apart), so they"
        "\nneed not equal the ratio of the medians above."
    )
    parts = [table]
    ratio_rows = [
        [
            r["model"],
            r["concurrency"],
            _ratio(r["throughput_ratio"]),
            f">= {THROUGHPUT_TARGET:.1f}x",
            _verdict(r["throughput_ok"]),
            _ratio(r["p99_ratio"]),
            f"<= {P99_TARGET:.1f}x",
            _verdict(r["p99_ok"]),
        ]
        for r in ratios(summary)
    ]
    ratio_headers = ["model", "conc", "req/s ratio", "target", "met", "p99 ratio", "target", "met"]
    parts.append(format_table("ServeDeck / bare", ratio_headers, ratio_rows))
    if outcome.baseline_ref:
        parts.append(_baseline_table(outcome, summary))
    parts.append(_batching_table(summary))
    parts.append(_monitoring_table(summary))
    log_rows = [
        [
            c.model,
            c.answered,
            "-" if c.logged is None else c.logged,
            "-" if c.logged is None else c.logged - c.answered,
        ]
        for c in outcome.log_checks
    ]
    parts.append(
        format_table(
            "ServeDeck prediction log after graceful stop (2xx answers vs rows written)",
            ["model", "answered", "logged", "difference"],
            log_rows,
        )
        # The load generator does not count requests still in flight when it stops, but the
        # server may answer and log them: a small positive difference is expected.
        + "\nlogged may exceed answered by the requests in flight when each load run ends."
    )
    return "\n\n".join(parts)


def _baseline_table(outcome: Outcome, summary: list[dict[str, Any]]) -> str:
    """The current ServeDeck against the one built from the baseline commit, same run."""
    ref, commit = outcome.baseline_ref or "", outcome.baseline_commit
    title = f"ServeDeck now vs baseline {ref}"
    if commit and commit != ref:
        title += f" ({commit})"
    if outcome.baseline_error:
        # The exception line says what went wrong; the whole traceback is in the JSON.
        last = outcome.baseline_error.strip().splitlines()[-1]
        return format_table(title, ["baseline not run"], [[short_error(last, 200)]])
    rows = []
    for r in ratios(summary, BASELINE, "servedeck", *_BASELINE_TARGETS):
        old = outcome.sanity.get((r["model"], BASELINE))
        now = outcome.sanity.get((r["model"], "servedeck"))
        same = "-" if old is None or now is None else ("yes" if abs(old - now) <= 1e-9 else "NO")
        rows.append(
            [
                r["model"],
                r["concurrency"],
                fmt(r["reference_rps"]),
                fmt(r["measured_rps"]),
                _ratio(r["throughput_ratio"]),
                r["throughput_middle_half"],
                _verdict(r["throughput_ok"]),
                fmt(r["reference_p99_ms"], 2),
                fmt(r["measured_p99_ms"], 2),
                _ratio(r["p99_ratio"]),
                r["p99_middle_half"],
                _verdict(r["p99_ok"]),
                r["p99_basis"],
                _ratio(r["wrk_p99_ratio"]),
                same,
            ]
        )
    headers = ["model", "conc", "req/s base", "req/s now", "ratio", "rounds", "met"]
    headers += ["p99 ms base", "p99 ms now", "ratio", "rounds", "met", "p99 at", "wrk's"]
    headers += ["same answer"]
    return (
        format_table(title, headers, rows)
        + f"\ntargets: req/s ratio >= {BASELINE_RPS_TARGET:.2f}x, "
        + f"p99 ratio <= {BASELINE_P99_TARGET:.3f}x (1/{BASELINE_RPS_TARGET:.2f})."
        + ROUNDS_NOTE
        + "\n"
        + _cpu_table(summary, BASELINE, "servedeck", "CPU now vs baseline", "base", "now")
    )


def _monitoring_table(summary: list[dict[str, Any]]) -> str:
    """Monitoring on (default) against off, in the same run."""
    rows = []
    for r in ratios(
        summary,
        reference="servedeck-unmonitored",
        measured="servedeck",
        rps_target=MONITORING_TARGET,
        p99_target=1 / MONITORING_TARGET,
    ):
        rows.append(
            [
                r["model"],
                r["concurrency"],
                fmt(r["reference_rps"]),
                fmt(r["measured_rps"]),
                _ratio(r["throughput_ratio"]),
                r["throughput_middle_half"],
                _verdict(r["throughput_ok"]),
                fmt(r["reference_p99_ms"], 2),
                fmt(r["measured_p99_ms"], 2),
                _ratio(r["p99_ratio"]),
                r["p99_middle_half"],
                _verdict(r["p99_ok"]),
                r["p99_basis"],
                _ratio(r["wrk_p99_ratio"]),
            ]
        )
    headers = ["model", "conc", "req/s off", "req/s on", "ratio", "rounds", "met"]
    headers += ["p99 ms off", "p99 ms on", "ratio", "rounds", "met", "p99 at", "wrk's"]
    return (
        format_table(
            "Monitoring: ServeDeck with monitoring off / on (Prometheus, drift windows)",
            headers,
            rows,
        )
        + f"\ntarget: monitoring on >= {MONITORING_TARGET:.2f}x of off (req/s), p99 within 1/0.95."
        + ROUNDS_NOTE
        + "\n"
        + _cpu_table(summary, "servedeck-unmonitored", "servedeck", "Monitoring's CPU", "off", "on")
    )


def _cpu_table(
    summary: list[dict[str, Any]],
    reference: str,
    measured: str,
    title: str,
    reference_label: str,
    measured_label: str,
) -> str:
    """CPU per 1,000 answered requests of two servers, each with its log writer: on 2 cores
    shared with the load generator, what the writer spends the server cannot, so the sum is
    what decides requests/s at full load; steadier than requests/s between rounds."""
    rows = []
    by_key = {(r["model"], r["server"], r["concurrency"]): r for r in summary}
    for (model, server, concurrency), new in sorted(by_key.items()):
        old = by_key.get((model, reference, concurrency))
        if server != measured or old is None:
            continue
        row: list[Any] = [model, concurrency]
        for part in ("server_cpu_ms_per_1k", "writer_cpu_ms_per_1k"):
            row += [fmt(old[part], 0), fmt(new[part], 0)]
        totals = [
            (r["server_cpu_ms_per_1k"] or 0) + (r["writer_cpu_ms_per_1k"] or 0) for r in (old, new)
        ]
        row.append(f"{totals[1] / totals[0]:.3f}x" if totals[0] else "-")
        rows.append(row)
    headers = ["model", "conc"]
    for part in ("server", "writer"):
        headers += [f"{part} {reference_label}", f"{part} {measured_label}"]
    headers.append(f"{measured_label}/{reference_label} (both)")
    return format_table(
        f"{title}: ms of CPU per 1,000 answered requests (median over rounds)", headers, rows
    )


def _batching_table(summary: list[dict[str, Any]]) -> str:
    """Micro-batching on (default) against off, both the full ServeDeck path."""
    index = {(s["model"], s["server"], s["concurrency"]): s for s in summary}
    rows = []
    for model, concurrency in sorted({(s["model"], s["concurrency"]) for s in summary}):
        on = index.get((model, "servedeck", concurrency), {})
        off = index.get((model, "servedeck-unbatched", concurrency), {})
        gain = on["rps"] / off["rps"] if on.get("rps") and off.get("rps") else None
        rows.append(
            [
                model,
                concurrency,
                fmt(off.get("rps")),
                fmt(on.get("rps")),
                fmt(gain, 2) + "x" if gain else "-",
                fmt(off.get("p99_ms"), 2),
                fmt(on.get("p99_ms"), 2),
            ]
        )
    headers = ["model", "conc", "req/s off", "req/s on", "gain", "p99 ms off", "p99 ms on"]
    return format_table("Micro-batching: ServeDeck with batching off / on", headers, rows)


def to_json(outcome: Outcome) -> dict[str, Any]:
    summary = summarise(outcome) if not outcome.error else []
    return {
        "error": outcome.error,
        "runs": [
            {
                "model": r.model,
                "server": r.server,
                "concurrency": r.concurrency,
                "repeat": r.repeat,
                "result": r.result.as_dict() if r.result else None,
                "error": r.error,
            }
            for r in outcome.runs
        ],
        "summary": [
            {key: value for key, value in entry.items() if key != "times_by_round"}
            for entry in summary
        ],
        "ratios": ratios(summary) if not outcome.error else [],
        "baseline": {
            "ref": outcome.baseline_ref,
            "commit": outcome.baseline_commit,
            "error": outcome.baseline_error,
            "ratios": (
                ratios(summary, BASELINE, "servedeck", *_BASELINE_TARGETS)
                if outcome.baseline_ref and not outcome.error
                else []
            ),
        },
        "sanity": {f"{m} on {s}": v for (m, s), v in outcome.sanity.items()},
        "log_checks": [c.__dict__ for c in outcome.log_checks],
        "server_log_problems": outcome.problems,
        "server_tracebacks": outcome.tracebacks,
    }
