/* The job page: live progress, error, previews, measured protection, download, cancel, delete. */
"use strict";

(function () {
  const sg = window.sg;
  const el = sg.el;
  const root = document.getElementById("job");
  const api = root.dataset.api;
  const jobId = root.dataset.jobId;
  const $ = function (id) { return document.getElementById(id); };

  let timer = null;
  let lastStatus = root.dataset.status;
  let lastStage = null;
  let previewsLoaded = false;
  let stopped = false;

  /* ---------- rendering whatever structure the metrics have ---------- */
  const LABELS = {
    arch: "Model", clean_acc: "Trained on originals", protected_acc: "Trained on protected",
    mean_clean_acc: "Mean accuracy, trained on originals", mean_protected_acc: "Mean accuracy, trained on protected",
    test_images: "Held-out test images", holdout_images: "Held-out images", archs: "Models", width: "Width",
    settings: "Victim training", victims: "Victim models",
    defence: "Defence", defense: "Defence", psnr: "PSNR", ssim: "SSIM", mean_psnr: "Mean PSNR",
    mean_ssim: "Mean SSIM", linf: "ℓ∞", mean_abs: "Mean |δ|", epochs: "Epochs", seed: "Seed",
    victim: "Victim", clean_best_acc: "Best epoch, originals", protected_best_acc: "Best epoch, protected",
    interval95: "95% interval", spread_clean_acc: "Spread, trained on originals",
    spread_protected_acc: "Spread, trained on protected", chance: "Chance accuracy", seeds: "Seeds",
  };

  function label(key) {
    if (LABELS[key]) return LABELS[key];
    const s = String(key).replace(/_/g, " ");
    return s.charAt(0).toUpperCase() + s.slice(1);
  }

  function isAccuracyKey(key) { return /acc|chance/i.test(key); }

  function fmt(key, v) {
    if (v === null || v === undefined) return "—";
    if (key === "interval95" && typeof v === "object") {
      return Object.keys(v).map(function (k) {
        return (k === "clean" ? "originals " : "protected ") + fmt("acc", v[k][0]) + "–" + fmt("acc", v[k][1]);
      }).join("; ");
    }
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "number") {
      if (isAccuracyKey(key)) return (v <= 1 ? v * 100 : v).toFixed(1) + "%";
      if (/psnr/i.test(key)) return isFinite(v) ? v.toFixed(2) + " dB" : "∞";
      if (/ssim/i.test(key)) return v.toFixed(4);
      if (Number.isInteger(v)) return String(v);
      return String(Math.round(v * 1000) / 1000);
    }
    if (Array.isArray(v)) {
      const shown = v.slice(0, 20).map(function (x) { return typeof x === "object" ? JSON.stringify(x) : String(x); });
      return shown.join(", ") + (v.length > 20 ? ", … (" + v.length + " in all)" : "");
    }
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function isRowList(v) {
    return Array.isArray(v) && v.length > 0 && v.every(function (x) { return x && typeof x === "object" && !Array.isArray(x); });
  }

  const FIRST_COLUMNS = ["victim", "arch", "defense", "defence", "seed", "clean_acc", "protected_acc"];

  function table(rows, caption) {
    const cols = [];
    rows.forEach(function (r) { Object.keys(r).forEach(function (k) { if (cols.indexOf(k) < 0) cols.push(k); }); });
    cols.sort(function (a, b) {
      const ia = FIRST_COLUMNS.indexOf(a), ib = FIRST_COLUMNS.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
    });
    const hasDrop = cols.indexOf("clean_acc") >= 0 && cols.indexOf("protected_acc") >= 0;
    const head = el("tr", null);
    cols.forEach(function (c) {
      head.append(el("th", { scope: "col", class: typeof rows[0][c] === "number" ? "num" : null }, label(c)));
    });
    if (hasDrop) head.append(el("th", { scope: "col", class: "num" }, "Accuracy drop"));
    const body = el("tbody", null);
    rows.forEach(function (r) {
      const tr = el("tr", null);
      cols.forEach(function (c, i) {
        const cell = i === 0 && typeof r[c] === "string" ? el("th", { scope: "row" }, fmt(c, r[c]))
          : el("td", { class: typeof r[c] === "number" ? "num" : null }, fmt(c, r[c]));
        tr.append(cell);
      });
      if (hasDrop) {
        const a = Number(r.clean_acc), b = Number(r.protected_acc);
        const scale = a <= 1 && b <= 1 ? 100 : 1;
        tr.append(el("td", { class: "num" }, isFinite(a) && isFinite(b) ? ((a - b) * scale).toFixed(1) + " points" : "—"));
      }
      body.append(tr);
    });
    return el("div", { class: "table-wrap" },
      el("table", null, caption ? el("caption", { class: "visually-hidden" }, caption) : null, el("thead", null, head), body));
  }

  /* Render an object: scalars as a definition list, lists of rows as tables, nested objects as sub-sections. */
  function renderObject(obj, depth, skip) {
    const frag = document.createDocumentFragment();
    const scalars = el("dl", { class: "stats" });
    let nScalars = 0;
    const blocks = [];
    Object.keys(obj).forEach(function (key) {
      if (skip && skip.indexOf(key) >= 0) return;
      const v = obj[key];
      if (isRowList(v)) {
        blocks.push([key, table(v, label(key))]);
      } else if (v && typeof v === "object" && !Array.isArray(v)) {
        if (depth < 3) blocks.push([key, renderObject(v, depth + 1)]);
      } else {
        scalars.append(el("div", null, el("dt", null, label(key)), el("dd", null, fmt(key, v))));
        nScalars++;
      }
    });
    if (nScalars) frag.append(scalars);
    blocks.forEach(function (b) {
      frag.append(el(depth === 0 ? "h3" : "h4", null, label(b[0])));
      frag.append(b[1]);
    });
    return frag;
  }

  function renderMetrics(metrics) {
    const section = $("metrics-section");
    if (!metrics || typeof metrics !== "object" || !Object.keys(metrics).length) { section.hidden = true; return; }
    const box = $("metrics");
    box.replaceChildren();
    const skip = [];
    if (metrics.holdout_images !== undefined && metrics.holdout_images === metrics.test_images) skip.push("holdout_images");
    const clean = Number(metrics.mean_clean_acc), prot = Number(metrics.mean_protected_acc);
    if (metrics.mean_clean_acc !== undefined && metrics.mean_protected_acc !== undefined && isFinite(clean) && isFinite(prot)) {
      const scale = clean <= 1 && prot <= 1 ? 100 : 1;
      box.append(el("p", { class: "headline", id: "metrics-headline" },
        "Models trained on the protected images reach ", el("strong", null, fmt("acc", prot)),
        " accuracy on unseen originals, against ", el("strong", null, fmt("acc", clean)),
        " when trained on the originals (" + ((prot - clean) * scale >= 0 ? "+" : "") + ((prot - clean) * scale).toFixed(1) + " points)."));
      skip.push("mean_clean_acc", "mean_protected_acc");
    }
    if (Array.isArray(metrics.warnings)) {
      metrics.warnings.forEach(function (w) { box.append(el("p", { class: "warning", role: "note" }, "Caution: " + w)); });
      skip.push("warnings");
    }
    box.append(renderObject(metrics, 0, skip));
    section.hidden = false;
  }

  function countsText(obj) {
    return Object.keys(obj).map(function (k) { return k + " × " + obj[k]; }).join(", ");
  }

  function renderSummary(summary) {
    const section = $("dataset-section");
    if (!summary || typeof summary !== "object" || !Object.keys(summary).length) { section.hidden = true; return; }
    const dl = el("dl", { class: "stats" });
    function add(term, text, wide) { dl.append(el("div", { class: wide ? "wide" : null }, el("dt", null, term), el("dd", null, text))); }
    const done = {};
    let classesText = null;
    const count = sg.imageCount(summary);
    if (count !== null) { add("Images", String(count)); done.num_images = true; }
    if (Array.isArray(summary.classes)) {
      const names = summary.classes.map(function (c) {
        return c && typeof c === "object" ? (c.name + (c.count !== undefined ? " (" + c.count + ")" : "")) : String(c);
      });
      done.classes = done.num_classes = true;
      classesText = ["Classes (" + names.length + ")", names.slice(0, 50).join(", ") + (names.length > 50 ? ", …" : "")];
    }
    if (Array.isArray(summary.min_size) && Array.isArray(summary.max_size)) {
      const a = summary.min_size.join("×"), b = summary.max_size.join("×");
      add("Image sizes", a === b ? a + " px" : a + " to " + b + " px");
      ["min_size", "max_size", "min_width", "max_width", "min_height", "max_height"].forEach(function (k) { done[k] = true; });
    }
    Object.keys(summary).forEach(function (key) {
      if (done[key]) return;
      const v = summary[key];
      if (v && typeof v === "object" && !Array.isArray(v)) { add(label(key), countsText(v)); return; }
      if (isRowList(v)) return;
      add(label(key), fmt(key, v));
    });
    if (classesText) add(classesText[0], classesText[1], true);
    $("dataset-summary").replaceChildren(dl);
    section.hidden = false;
  }

  /* ---------- previews ---------- */
  function previewUrl(name, urls) {
    if (!name) return null;
    if (urls && urls[name]) return urls[name];
    if (/^(\/|https?:)/.test(name)) return name;
    return api + "/preview/" + encodeURIComponent(name);
  }

  async function loadPreviews() {
    previewsLoaded = true;
    let body;
    try {
      body = await sg.api(api + "/previews");
    } catch (err) {
      if (err.status !== 404) {
        previewsLoaded = false;
        $("action-error").textContent = "Could not load the previews: " + err.message;
      }
      return;
    }
    const items = Array.isArray(body) ? body : (body && (body.items || body.previews)) || [];
    const urls = body && !Array.isArray(body) ? body.urls : null;
    if (!items.length) return;
    const grid = $("previews");
    grid.replaceChildren();
    items.forEach(function (p, i) {
      const name = p.class !== undefined ? String(p.class) : "";
      const what = "image " + (p.index !== undefined ? p.index : i + 1) + (name ? " (" + name + ")" : "");
      const trio = el("div", { class: "trio" });
      [["original", "Original"], ["protected", "Protected"], ["delta", "δ amplified"]].forEach(function (k) {
        const src = previewUrl(p[k[0]], urls);
        if (!src) return;
        trio.append(el("figure", null,
          el("img", { src: src, alt: k[1] + " " + what, loading: "lazy", width: "96", height: "96" }),
          el("figcaption", null, k[1])));
      });
      grid.append(el("figure", { class: "preview" }, trio,
        el("figcaption", { class: "meta" },
          el("span", { class: "path", title: p.path || null }, p.path || name || "#" + (p.index !== undefined ? p.index : i + 1)),
          el("span", null, "PSNR " + fmt("psnr", p.psnr) + " · SSIM " + fmt("ssim", p.ssim)))));
    });
    $("previews-section").hidden = false;
  }

  /* ---------- live state ---------- */
  function render(job) {
    const status = job.status;
    root.dataset.status = status;
    const badge = $("job-status");
    badge.textContent = status;
    badge.className = "badge " + status;
    const active = status === "queued" || status === "running";

    $("progress-block").hidden = !active;
    const progress = Math.min(1, Math.max(0, Number(job.progress) || 0));
    $("job-progress").value = progress;
    $("job-progress").textContent = sg.percent(progress);
    $("job-percent").textContent = sg.percent(progress);
    $("job-stage").textContent = sg.stageText(job);
    $("job-eta").textContent = status === "queued" ? "not started yet" : sg.formatEta(job.eta_seconds);

    if (job.created_at) {
      const t = $("job-created");
      t.setAttribute("datetime", job.created_at);
      t.textContent = sg.formatDate(job.created_at);
    }
    const count = sg.imageCount(job.dataset_summary);
    $("job-images").textContent = count === null ? "—" : String(count);
    if (job.params) {
      if (job.params.eps !== undefined && job.params.eps !== null) $("job-eps").textContent = "ε = " + job.params.eps + "/255";
      if (job.params.method) $("job-method").textContent = job.params.method;
      if (job.params.preset) $("job-preset").textContent = job.params.preset;
    }

    $("job-error").hidden = status !== "failed";
    if (status === "failed") $("job-error-text").textContent = job.error || "No reason was recorded.";
    $("job-cancelled").hidden = status !== "cancelled";
    $("cancel").hidden = !active;
    $("delete").hidden = active;
    const download = $("download");
    download.hidden = status !== "succeeded";
    if (job.download_url) download.href = job.download_url;

    renderSummary(job.dataset_summary);
    renderMetrics(job.metrics);
    if ((status === "succeeded" || job.preview_url) && !previewsLoaded) loadPreviews();

    const live = $("job-live");
    if (status !== lastStatus) {
      live.textContent = status === "succeeded" ? "The job is done. The protected zip is ready to download."
        : status === "failed" ? "The job failed." : status === "cancelled" ? "The job was cancelled."
        : sg.stageText(job);
    } else if (active && job.stage !== lastStage && job.stage) {
      live.textContent = sg.stageText(job);
    }
    lastStatus = status;
    lastStage = job.stage;
    return active;
  }

  async function poll() {
    clearTimeout(timer);
    if (stopped) return;
    let job;
    try {
      job = await sg.api(api);
    } catch (err) {
      if (err.status === 404) {
        stopped = true;
        $("action-error").textContent = "This job no longer exists.";
        return;
      }
      timer = setTimeout(poll, 3000);
      return;
    }
    const active = render(job);
    if (active) timer = setTimeout(poll, 1000);
  }

  /* ---------- actions ---------- */
  $("cancel").addEventListener("click", async function () {
    if (!window.confirm("Cancel this job? Work done so far is discarded.")) return;
    const button = this;
    button.disabled = true;
    $("action-error").textContent = "";
    try {
      await sg.api(api + "/cancel", { method: "POST" });
    } catch (err) {
      $("action-error").textContent = "Could not cancel the job: " + err.message;
    }
    button.disabled = false;
    poll();
  });

  $("delete").addEventListener("click", async function () {
    if (!window.confirm("Delete this job and all its files? This cannot be undone.")) return;
    const button = this;
    button.disabled = true;
    $("action-error").textContent = "";
    try {
      await sg.api(api, { method: "DELETE" });
    } catch (err) {
      button.disabled = false;
      $("action-error").textContent = "Could not delete the job: " + err.message;
      return;
    }
    stopped = true;
    window.location.assign("/");
  });

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && (root.dataset.status === "queued" || root.dataset.status === "running")) poll();
  });

  poll();
})();
