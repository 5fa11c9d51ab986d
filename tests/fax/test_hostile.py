"""Hostile documents are refused, each with its code, and a good one beside them renders."""

from __future__ import annotations

import asyncio

import pytest

from fax import render
from fax.sandbox import Sandbox
from tests.fax import samples

pytestmark = pytest.mark.slow

GOOD = samples.pdf(2)
# A conversion that must be killed at its deadline. Any document finishes within a short
# budget on some machine (40 pages took 0.13 s here, so 0.05 s was beaten on a fast one);
# with no budget at all the zygote kills the child every time: it compares the deadline
# with the clock before it reaps, so even a child that already finished is reported as
# killed at its deadline.
KILLED = render.Limits(seconds=0.0)


def hostile() -> list[tuple[str, bytes, str, dict[str, object]]]:
    full = samples.pdf(3)
    return [
        ("encrypted", samples.pdf(encrypt="secret"), "application/pdf", {}),
        ("broken", full[: len(full) // 2], "application/pdf", {}),  # truncated
        ("broken", b"%PDF-1.4\n garbage garbage\n%%EOF\n", "application/pdf", {}),
        ("too_many_pages", samples.pdf(51), "application/pdf", {}),
        ("too_large", samples.png_bomb(), "image/png", {}),
        ("timeout", samples.pdf(40), "application/pdf", {"limits": KILLED}),
        ("unsupported_type", b"GIF89a....", "image/gif", {}),
        ("unsupported_type", b"\xff\xfe\x00bad", "text/plain", {}),
        ("unsupported_type", b"<html><body>hi</body></html>", "text/html", {}),
        ("broken", samples.image("PNG")[:300], "image/png", {}),
        ("too_many_pages", samples.image("TIFF", (200, 100), frames=4), "image/tiff",
         {"max_pages": 3}),
        ("too_large", samples.image("PNG", (3000, 3000)), "image/png",
         {"limits": render.Limits(max_pixels=1_000_000)}),
        ("too_large", b"x" * 2000, "text/plain", {"limits": render.Limits(max_bytes=1000)}),
    ]


@pytest.mark.anyio
async def test_each_hostile_document_is_refused_with_its_code(sandbox: Sandbox) -> None:
    """All at once, with a good document in the same batch: every refusal carries its
    code and a reason, and the good document still renders completely."""
    cases = hostile()
    jobs = [render.render_document_async(data, ctype, sandbox=sandbox, **kw)  # type: ignore[arg-type]
            for _, data, ctype, kw in cases]  # fmt: skip
    jobs.insert(3, render.render_document_async(GOOD, "application/pdf", sandbox=sandbox))
    results = await asyncio.gather(*jobs, return_exceptions=True)
    good = results.pop(3)
    assert isinstance(good, render.RenderedFax) and good.pages == 2, good
    for (code, *_), result in zip(cases, results, strict=True):
        assert isinstance(result, render.DocumentError), (code, result)
        assert result.code == code, (code, result)
        assert result.reason


@pytest.mark.anyio
async def test_the_sandbox_survives_a_killed_child(sandbox: Sandbox) -> None:
    """After a conversion was killed at its deadline, the next one works."""
    with pytest.raises(render.DocumentError) as err:
        await render.render_document_async(samples.pdf(40), "application/pdf", sandbox=sandbox,
                                           limits=KILLED)  # fmt: skip
    assert err.value.code == "timeout"
    fax = await render.render_document_async(GOOD, "application/pdf", sandbox=sandbox)
    assert fax.pages == 2


def test_memory_budget_refuses_a_greedy_document(sandbox: Sandbox) -> None:
    """A JPEG of 7000 x 7000 pixels needs ~50 MB to decode: over a 20 MB budget."""
    data = samples.image("JPEG", (7000, 7000))
    with pytest.raises(render.DocumentError) as err:
        render.render_document(data, "image/jpeg", sandbox=sandbox,
                               limits=render.Limits(memory=20 << 20))  # fmt: skip
    assert err.value.code == "too_large"
    assert render.render_document(data, "image/jpeg", sandbox=sandbox).pages == 1


def test_a_dead_zygote_is_replaced() -> None:
    """If the zygote dies (killed here), the next conversion starts a new one."""
    import os
    import signal

    box = Sandbox(slots=1)
    try:
        box.start()
        first = box.zygote_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        fax = render.render_document(GOOD, "application/pdf", sandbox=box)
        assert fax.pages == 2
        assert box.zygote_pid not in (None, first)
    finally:
        box.close()
    assert box.zygote_pid is None
