/* Shared utilities for the sepguard web page (no dependencies). The one source of the words and
   numbers the pages show while jobs run: stage labels, status words, time left, sizes, percentages. */
"use strict";

window.sg = (function () {
  const STAGES = {
    ingest: "Checking the dataset",
    train: "Training the surrogate model",
    means: "Computing class features",
    craft: "Crafting the protective perturbations",
    package: "Writing the protected images",
    evaluate: "Measuring the protection",
  };

  const STATUS_WORDS = {
    queued: "Waiting for a worker",
    running: "Running",
    succeeded: "Done",
    failed: "Failed",
    cancelled: "Cancelled",
  };

  function stageText(job) {
    if (!job) return "";
    if (job.status === "queued") return "Waiting for a worker to start the job…";
    if (job.status === "succeeded") return "Done.";
    if (job.status === "failed") return "Failed.";
    if (job.status === "cancelled") return "Cancelled.";
    if (job.stage && STAGES[job.stage]) return STAGES[job.stage] + "…";
    if (job.stage) return String(job.stage) + "…";
    return "Starting…";
  }

  function formatEta(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "estimating time left";
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 5) return "almost done";
    if (seconds < 60) return "about " + seconds + " s left";
    const minutes = Math.round(seconds / 60);
    if (minutes < 60) return "about " + minutes + " min left";
    const hours = Math.floor(minutes / 60);
    const rest = minutes % 60;
    return "about " + hours + " h" + (rest ? " " + rest + " min" : "") + " left";
  }

  function formatBytes(n) {
    if (!isFinite(n)) return "";
    const units = ["bytes", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
  }

  function formatDate(value) {
    if (!value) return "—";
    const d = new Date(value);
    if (isNaN(d.getTime())) return String(value);
    return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function percent(progress) {
    const p = Number(progress) || 0;
    return Math.round(Math.min(1, Math.max(0, p)) * 100) + "%";
  }

  /* The number of images of a job (its DatasetSummary), or a dash before the dataset was read. */
  function imageCount(job) {
    return job.dataset_summary ? String(job.dataset_summary.num_images) : "—";
  }

  /* Turn an API error body ({detail}) into words. */
  function errorText(body, status) {
    let detail = body && body.detail !== undefined ? body.detail : body;
    if (Array.isArray(detail)) {
      detail = detail.map(function (d) {
        if (d && typeof d === "object") {
          const loc = Array.isArray(d.loc) ? d.loc.filter(function (x) { return x !== "body" && x !== "query"; }).join(".") : "";
          return (loc ? loc + ": " : "") + (d.msg || JSON.stringify(d));
        }
        return String(d);
      }).join("\n");
    } else if (detail && typeof detail === "object") {
      detail = detail.message || detail.msg || JSON.stringify(detail);
    }
    if (typeof detail === "string" && detail.trim()) return detail;
    if (status === 413) return "The file is too large for this server.";
    if (status === 503) return "The service is busy or its job queue is down. Try again in a minute.";
    if (status === 0) return "Could not reach the server. Check your connection and try again.";
    return "The server answered with an error (HTTP " + status + ").";
  }

  /* The session's CSRF token: every change made with the sign-in cookie sends it back. */
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  /* fetch against the API with the sign-in cookie; JSON in and out. Throws {status, message}. */
  async function api(url, options) {
    options = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    options.headers = Object.assign({ Accept: "application/json" }, options.headers);
    const method = (options.method || "GET").toUpperCase();
    if (method !== "GET" && method !== "HEAD") options.headers["X-CSRF-Token"] = csrfToken();
    let response;
    try {
      response = await fetch(url, options);
    } catch (e) {
      throw { status: 0, message: errorText(null, 0) };
    }
    if (response.status === 401) {
      window.location.assign("/login");
      throw { status: 401, message: "Your sign-in has expired. Please sign in again." };
    }
    let body = null;
    const text = await response.text();
    if (text) {
      try { body = JSON.parse(text); } catch (e) { body = text; }
    }
    if (!response.ok) throw { status: response.status, message: errorText(body, response.status), body: body };
    return body;
  }

  /* Create an element: el("td", {class: "num"}, "text", child, ...) */
  function el(tag, attrs) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const key of Object.keys(attrs)) {
        const v = attrs[key];
        if (v === null || v === undefined || v === false) continue;
        if (key === "class") node.className = v;
        else if (key === "text") node.textContent = v;
        else node.setAttribute(key, v === true ? "" : v);
      }
    }
    for (let i = 2; i < arguments.length; i++) {
      const child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  return {
    STAGES: STAGES, STATUS_WORDS: STATUS_WORDS, stageText: stageText, formatEta: formatEta,
    formatBytes: formatBytes, formatDate: formatDate, percent: percent, imageCount: imageCount,
    errorText: errorText, api: api, el: el, csrfToken: csrfToken,
  };
})();
