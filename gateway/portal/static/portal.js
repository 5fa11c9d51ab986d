// The portal's own script (no inline scripts: the CSP forbids them). Three jobs:
// 1. live updates: ONE event stream per browser, shared by all tabs (over HTTP/1.1 a
//    browser opens at most 6 connections per host, so one stream per tab would soon
//    block every request). A Web Lock elects one tab to hold the EventSource; it passes
//    every event to the other tabs over a BroadcastChannel. When it closes, another tab
//    takes the lock and resumes the stream from the last event id seen.
// 2. the WhatsApp window countdown;
// 3. the composer: Enter sends, Shift+Enter is a new line.
(function () {
  "use strict";
  const body = document.body;

  function say(text) {
    const live = document.getElementById("live");
    if (!live || !text) return;
    live.textContent = "";
    // A new text node after a tick, so that screen readers announce repeats too.
    window.setTimeout(function () { live.textContent = text; }, 50);
  }

  function fill(template, values) {
    return (template || "").replace(/\{(\w+)\}/g, function (_, k) {
      return values[k] === undefined || values[k] === null ? "" : String(values[k]);
    });
  }

  // Each refresh is sourced from the element it replaces: htmx keeps one request queue
  // per source element (default: the body) and, while one request runs, queues one more
  // and DROPS the rest. With the body as the source for all, a live inbound message's
  // thread refresh was dropped whenever a status event's refreshes were still running
  // (a slow server): the message never appeared. Per element, a dropped refresh is
  // always covered by the queued one, which starts after it and fetches newer state.
  function load(url, target, swap) {
    window.htmx.ajax("GET", url, { source: target, target: target, swap: swap || "outerMorph" });
  }

  function refresh(selector, swap, extra) {
    const el = document.querySelector(selector);
    if (!el || !window.htmx) return;
    let url = el.getAttribute("data-refresh");
    if (!url) return;
    if (extra) url += (url.indexOf("?") < 0 ? "?" : "&") + extra;
    load(url, el, swap);
  }

  function handle(event) {
    if (!event || !event.type || event.type === "hello") return;
    const thread = document.getElementById("thread");
    const here = thread && thread.getAttribute("data-conversation") === event.conversation_id;
    if (event.type === "message.received" || event.type === "message.created") {
      refresh("#conversations", "outerMorph");
      window.htmx && window.htmx.trigger(body, "portal:inbox");
      if (here) refresh("#messages", "outerMorph", document.visibilityState === "visible" ? "read=1" : "");
      if (event.type === "message.received") say(fill(body.dataset.sayNew, event));
    } else if (event.type === "message.status") {
      refresh("#conversations", "outerMorph");
      const bubble = here && document.getElementById("m-" + event.message_id);
      if (bubble && window.htmx) {
        load("/m/" + encodeURIComponent(event.message_id), bubble);
      } else if (here) {
        refresh("#messages", "outerMorph");
      }
      if (event.status === "failed") say(fill(body.dataset.sayFailed, event));
    } else if (event.type === "fax.page") {
      const bubble = here && document.getElementById("m-" + event.message_id);
      if (bubble && window.htmx) {
        const q = "?page=" + encodeURIComponent(event.page || "") + "&pages=" + encodeURIComponent(event.pages || "");
        load("/m/" + encodeURIComponent(event.message_id) + q, bubble);
        say(fill(body.dataset.sayFax, event));
      }
    }
  }

  // -- the shared stream ---------------------------------------------------------------
  function startLive() {
    const url = body.dataset.live;
    if (!url || !window.EventSource) return;
    const indicator = document.getElementById("connection");
    // The page shows the store as it was at this event: the stream resumes after it,
    // so nothing that happened while the page loaded is missed.
    let lastId = body.dataset.liveSince || null;
    const channel = window.BroadcastChannel ? new BroadcastChannel("portal-events") : null;

    function status(ok) {
      if (!indicator) return;
      indicator.hidden = ok;
      indicator.textContent = ok ? "" : body.dataset.sayOffline;
    }

    if (channel) {
      channel.onmessage = function (m) {
        const data = m.data || {};
        if (data.id) lastId = data.id;
        if (data.kind === "event") handle(data.payload);
        if (data.kind === "status") status(data.ok);
      };
    }

    function open() {
      const es = new EventSource(url + (lastId ? "?last_event_id=" + encodeURIComponent(lastId) : ""));
      es.addEventListener("portal", function (e) {
        lastId = e.lastEventId || lastId;
        let payload = null;
        try { payload = JSON.parse(e.data); } catch (err) { return; }
        if (channel) channel.postMessage({ kind: "event", id: lastId, payload: payload });
        handle(payload);
      });
      es.onmessage = function (e) {  // the stream's first line: where it starts
        if (e.lastEventId) lastId = e.lastEventId;
        if (channel) channel.postMessage({ kind: "id", id: lastId });
      };
      es.onopen = function () { status(true); if (channel) channel.postMessage({ kind: "status", ok: true }); };
      es.onerror = function () {
        status(false);
        if (channel) channel.postMessage({ kind: "status", ok: false });
        if (es.readyState === EventSource.CLOSED) {
          // Signed out or the server is gone: try again later (the browser gave up).
          window.setTimeout(open, 10000);
        }
      };
      return es;
    }

    if (navigator.locks && channel) {
      // Held until this tab closes: then the next waiting tab becomes the leader.
      navigator.locks.request("portal-events-leader", function () {
        body.dataset.liveLeader = "1";
        open();
        return new Promise(function () {});
      });
    } else {
      open();  // no Web Locks: each tab keeps its own stream
    }
  }

  // -- the WhatsApp window countdown ----------------------------------------------------
  // Ticks every 15 s, and right when a window closes (so the composer changes on time).
  function tickCountdowns() {
    const now = Date.now();
    let next = 15000;
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      const ends = Date.parse(el.getAttribute("data-expires"));
      if (isNaN(ends)) return;
      if (ends > now) next = Math.max(250, Math.min(next, ends - now + 100));
      const left = Math.floor((ends - now) / 1000);
      if (left <= 0) {
        if (!el.dataset.closed) {
          el.dataset.closed = "1";
          el.textContent = el.dataset.fmtClosed;
          const box = el.closest(".window");
          if (box) { box.classList.remove("open"); box.classList.add("closed"); }
          window.htmx && window.htmx.trigger(body, "portal:window-closed");
          say(el.dataset.fmtClosed);
        }
        return;
      }
      const minutes = Math.max(1, Math.floor(left / 60));
      const h = Math.floor(minutes / 60);
      const m = minutes % 60;
      const span = h ? fill(el.dataset.fmtHm, { h: h, m: m }) : fill(el.dataset.fmtM, { m: m });
      el.textContent = fill(el.dataset.fmtLeft, { time: el.dataset.time, left: span });
    });
    window.setTimeout(tickCountdowns, next);
  }

  // -- the composer: Enter sends, Shift+Enter is a new line -------------------------------
  document.addEventListener("keydown", function (e) {
    const t = e.target;
    if (!(t instanceof HTMLTextAreaElement) || !t.hasAttribute("data-enter-send")) return;
    if (e.key !== "Enter" || e.shiftKey || e.ctrlKey || e.altKey || e.metaKey || e.isComposing) return;
    e.preventDefault();
    const form = t.form;
    if (!form || !t.value.trim()) return;
    const primary = form.querySelector("button.primary[type=submit]");
    if (form.requestSubmit) form.requestSubmit(primary || undefined); else form.submit();
  });

  // Looking at a thread again reads it.
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && document.getElementById("thread")) {
      refresh("#messages", "outerMorph", "read=1");
      window.htmx && window.htmx.trigger(body, "portal:inbox");
    }
  });

  // After a send the composer is new: keep typing in it.
  document.addEventListener("htmx:after:swap", function (e) {
    const ctx = e.detail && e.detail.ctx;
    const target = ctx && ctx.target;
    if (target && target.id === "composer" || (e.target && e.target.id === "composer")) {
      const text = document.getElementById("compose-text");
      if (text && (!document.activeElement || document.activeElement === body)) text.focus();
    }
  });

  startLive();
  tickCountdowns();
})();
