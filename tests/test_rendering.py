"""The notifications as a person sees them: rendered like a Matrix client's
timeline (tests/render_notifications.py) in headless Chromium at a phone's
390 px, and checked on what the browser laid out.

The sanitizer tests need no browser; the others are skipped when Debian's
``chromium`` is not installed.
"""

import os

import pytest
import render_notifications as rn

CHROMIUM_MISSING = rn.chromium_path() is None
needs_chromium = pytest.mark.skipif(CHROMIUM_MISSING, reason="chromium is not installed (apt-get install chromium)")


# ---------------------------------------------------------------------------
# The sanitizer: the Matrix HTML subset, as clients apply it
# ---------------------------------------------------------------------------


def test_sanitizer_keeps_the_subset_and_the_text():
    fragment = ('<b onclick="x()">bold</b> <code class="language-sh evil">ls</code> <font color="#ff0000" '
                'data-mx-bg-color="red">red</font> <a href="https://example.org/" target="_top">link</a>'
                '<br/><ol start="3"><li>three</li></ol><details><summary>more</summary>hidden</details>')
    assert rn.sanitize(fragment) == (
        '<b>bold</b> <code class="language-sh">ls</code> <font color="#ff0000" style="color:#ff0000">red</font> '
        '<a href="https://example.org/" rel="noreferrer noopener" target="_blank">link</a><br><ol start="3">'
        '<li>three</li></ol><details><summary>more</summary>hidden</details>')


def test_sanitizer_strips_what_is_not_in_the_subset():
    fragment = ('<img src=x onerror=alert(1)><script>alert(2)</script><style>b{}</style>'
                '<iframe src="https://evil/">frame</iframe><mx-reply><blockquote>quoted <b>reply</b></blockquote>'
                '</mx-reply><marquee>kept text</marquee><a href="javascript:alert(3)">js</a>'
                '<img src="mxc://example.org/abc" alt="pic"><!-- comment --><p><i>unclosed')
    clean = rn.sanitize(fragment)
    assert clean == ('kept text<a rel="noreferrer noopener" target="_blank">js</a>'
                     '<img data-mx-src="mxc://example.org/abc" alt="pic"><p><i>unclosed</i></p>')
    assert set(rn.tags_in(clean)) <= rn.ALLOWED_TAGS


def test_sanitizer_escapes_text_and_linkifies_only_plain_text():
    assert rn.sanitize("a &lt;img src=x&gt; &amp; b") == "a &lt;img src=x&gt; &amp; b"
    linked = rn.sanitize("see https://example.org/x, or <code>https://example.org/y</code>")
    assert linked.count("<a ") == 1 and "<code>https://example.org/y</code>" in linked
    assert "matrix.to/#/@room:example.org" in rn.sanitize("ping @room:example.org")
    assert "matrix.to" not in rn.sanitize("ping \uff20room:example.org")


def test_lock_screen_text_is_the_first_two_lines():
    assert rn.lock_screen_text("one\ntwo\nthree") == "one\ntwo"
    assert rn.lock_screen_text("only") == "only"


# ---------------------------------------------------------------------------
# The plugin's own output, before any browser
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples():
    found = rn.all_samples()
    assert len([s for s in found if s.tag == "sample"]) >= 20, "tests/data alone has over 20 kinds of event"
    return found


def test_plugin_output_needs_no_sanitizing(samples):
    """Every tag the plugin writes is in the subset, so a client shows all
    of it: sanitizing removes nothing."""
    for sample in samples:
        parser = rn.MatrixSanitizer()
        parser.feed(sample.notification.html)
        parser.result()
        assert parser.removed == {}, (sample.kind, parser.removed)


def test_hostile_user_name_is_escaped_in_the_html(samples):
    hostile = [s for s in samples if s.tag == "hostile"]
    assert len(hostile) == 1
    content = hostile[0].notification.content()
    assert "<img" not in content["formatted_body"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in content["formatted_body"]
    for text in (content["body"], content["formatted_body"]):
        assert "@room" not in text and "\u202e" not in text
        assert "\uff20room" in text and "\\u202e" in text
    headline = content["body"].split("\n")[0]
    assert "mallory" in headline and "\\nroot" in headline, "the name's newline must not start a line of its own"


def test_typed_keystrokes_cannot_mention_the_room(samples):
    tty = [s for s in samples if s.tag == "hostile-tty"]
    assert len(tty) == 1
    assert "@room" not in tty[0].notification.body


# ---------------------------------------------------------------------------
# In the browser, at phone width
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phone(samples, tmp_path_factory):
    if CHROMIUM_MISSING:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    out = tmp_path_factory.mktemp("rendering")
    facts = rn.render(samples, str(out), "phone", rn.PHONE_WIDTH)
    return facts, str(out / "phone.png"), str(out / "phone.html")


@needs_chromium
def test_phone_screenshot_is_390_px_wide(phone):
    facts, png, _ = phone
    assert os.path.getsize(png) > 10000
    width, height = rn.png_size(png)
    assert width == rn.PHONE_WIDTH == 390
    assert height == facts["page_height"] > 2000
    assert facts["body_width"] == 390
    assert facts["device_pixel_ratio"] == 1


@needs_chromium
def test_every_sample_is_on_the_page(phone, samples):
    facts, _, _ = phone
    assert [m["kind"] for m in facts["messages"]] == [s.kind for s in samples]
    assert all(m["height"] > 0 and m["text"].strip() for m in facts["messages"])


@needs_chromium
def test_no_message_overflows_at_phone_width(phone):
    facts, _, _ = phone
    wide = ["%s: scrollWidth %d > clientWidth %d" % (m["kind"], m["scroll_width"], m["client_width"])
            for m in facts["messages"] if m["scroll_width"] > m["client_width"]]
    assert wide == []
    assert rn.problems_in(dict(facts, expected_width=390)) == []


@needs_chromium
def test_hostile_message_shows_its_markup_as_text(phone):
    facts, _, _ = phone
    [hostile] = [m for m in facts["messages"] if m["tag"] == "hostile"]
    assert "<img src=x onerror=alert(1)>" in hostile["text"]
    assert hostile["images"] == 0
    assert hostile["links"] == []
    assert "@room" not in hostile["text"] and "\u202e" not in hostile["text"]


@needs_chromium
def test_only_matrix_subset_tags_in_rendered_messages(phone):
    facts, _, page = phone
    for m in facts["messages"]:
        assert set(m["tags"]) <= rn.ALLOWED_TAGS, m["kind"]
    assert all(m["images"] == 0 for m in facts["messages"])
    with open(page, encoding="utf-8") as handle:
        assert "<img" not in handle.read()


@needs_chromium
def test_lock_screen_preview_is_two_lines_at_most(phone):
    facts, _, _ = phone
    assert all(m["lock_lines"] <= 2 for m in facts["messages"])


@needs_chromium
def test_overflow_is_detected(tmp_path):
    """The checks above can fail: a 1000 px image in a message is caught
    (and the page is laid out at 390 px, not Chromium's 500 px minimum)."""
    wide = rn.Notification(body="wide", html='<img src="mxc://example.org/a" width="1000" height="20">',
                              fields={}, timestamp=0.0)
    facts = rn.render([rn.Sample("wide image", "built here", wide)], str(tmp_path), "phone", rn.PHONE_WIDTH)
    [message] = facts["messages"]
    assert message["scroll_width"] > message["client_width"]
    assert any("wide image" in p for p in rn.problems_in(dict(facts, expected_width=390)))
