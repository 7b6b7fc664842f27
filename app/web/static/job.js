/* The job page: live progress, error, previews, measured protection, download, cancel, delete.
   It shows the API's payloads field by field: JobPublic (with its DatasetSummary and
   ProtectionMeasurement) and PreviewList, as the OpenAPI schema names them. */
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

  /* ---------- numbers ---------- */
  /* Accuracies are fractions (the API's ProtectionMeasurement); shown as percentages and points. */
  function accuracy(v) { return v === null ? "—" : (v * 100).toFixed(1) + "%"; }
  function pointsText(diff) { return (diff * 100).toFixed(1) + " points"; }
  function interval(pair) { return accuracy(pair[0]) + "–" + accuracy(pair[1]); }
  function psnr(v) { return isFinite(v) ? v.toFixed(2) + " dB" : "∞"; }
  function list(values) {
    return values.slice(0, 20).join(", ") + (values.length > 20 ? ", … (" + values.length + " in all)" : "");
  }
  function counts(obj) {
    return Object.keys(obj).map(function (k) { return k + " × " + obj[k]; }).join(", ");
  }

  function stats(rows) {
    const dl = el("dl", { class: "stats" });
    rows.forEach(function (r) {
      if (r) dl.append(el("div", { class: r[2] ? "wide" : null }, el("dt", null, r[0]), el("dd", null, r[1])));
    });
    return dl;
  }

  /* ---------- the dataset (DatasetSummary) ---------- */
  function renderSummary(summary) {
    const section = $("dataset-section");
    if (!summary) { section.hidden = true; return; }
    const sizes = summary.min_size && summary.max_size
      ? [summary.min_size.join("×"), summary.max_size.join("×")] : null;
    const names = summary.classes.map(function (c) { return c.name + " (" + c.count + ")"; });
    $("dataset-summary").replaceChildren(stats([
      ["Images", String(summary.num_images)],
      sizes && ["Image sizes", sizes[0] === sizes[1] ? sizes[0] + " px" : sizes[0] + " to " + sizes[1] + " px"],
      ["Formats", counts(summary.formats)],
      ["Modes", counts(summary.modes)],
      ["Skipped", String(summary.skipped)],
      ["Classes (" + names.length + ")", names.slice(0, 50).join(", ") + (names.length > 50 ? ", …" : ""), true],
    ]));
    section.hidden = false;
  }

  /* ---------- the measured protection (ProtectionMeasurement) ---------- */
  function victimTable(rows) {
    const clean = rows.some(function (r) { return r.clean_acc !== null; });
    /* the square size each victim trained at (absent for jobs measured before it was recorded) */
    const sized = rows.some(function (r) { return r.resolution !== null; });
    /* [heading, cell text, numeric]; the victim's name heads its row */
    const columns = [
      ["Victim", function (r) { return r.victim; }, false],
      ["Model", function (r) { return r.arch; }, false],
      ["Defence", function (r) { return r.defense; }, false],
      ["Seed", function (r) { return String(r.seed); }, true],
      sized && ["Resolution", function (r) { return r.resolution === null ? "—" : r.resolution + " px"; }, true],
      clean && ["Trained on originals", function (r) { return accuracy(r.clean_acc); }, true],
      ["Trained on protected", function (r) { return accuracy(r.protected_acc); }, true],
      ["Best epoch, protected", function (r) { return accuracy(r.protected_best_acc); }, true],
      ["95% interval", function (r) {
        const i = r.interval95;
        return "protected " + interval(i.protected) + (i.clean ? "; originals " + interval(i.clean) : "");
      }, false],
      clean && ["Best epoch, originals", function (r) { return accuracy(r.clean_best_acc); }, true],
      clean && ["Accuracy drop", function (r) {
        return r.clean_acc === null ? "—" : pointsText(r.clean_acc - r.protected_acc);
      }, true],
    ].filter(Boolean);
    const head = el("tr", null);
    columns.forEach(function (c) { head.append(el("th", { scope: "col", class: c[2] ? "num" : null }, c[0])); });
    const body = el("tbody", null);
    rows.forEach(function (r) {
      const tr = el("tr", null);
      columns.forEach(function (c, i) {
        tr.append(i === 0 ? el("th", { scope: "row" }, c[1](r)) : el("td", { class: c[2] ? "num" : null }, c[1](r)));
      });
      body.append(tr);
    });
    return el("div", { class: "table-wrap" },
      el("table", null, el("caption", { class: "visually-hidden" }, "Victim models"), el("thead", null, head), body));
  }

  /* the means per victim resolution, when victims trained at more than one */
  function resolutionMeans(m) {
    if (!m.by_resolution || m.by_resolution.length < 2) return [];
    return m.by_resolution.map(function (g) {
      return ["Mean at " + g.resolution + " px", "protected " + accuracy(g.mean_protected_acc) +
        (g.mean_clean_acc !== null ? ", originals " + accuracy(g.mean_clean_acc) : "")];
    });
  }

  function renderMetrics(m) {
    const section = $("metrics-section");
    if (!m) { section.hidden = true; return; }
    const box = $("metrics");
    box.replaceChildren();
    const clean = m.mean_clean_acc !== null;
    if (clean) {
      const diff = m.mean_protected_acc - m.mean_clean_acc;
      box.append(el("p", { class: "headline", id: "metrics-headline" },
        "Models trained on the protected images reach ", el("strong", null, accuracy(m.mean_protected_acc)),
        " accuracy on unseen originals, against ", el("strong", null, accuracy(m.mean_clean_acc)),
        " when trained on the originals (" + (diff >= 0 ? "+" : "") + pointsText(diff) + ")." +
        (m.by_resolution && m.by_resolution.length > 1 ? " Averaged over victims at " +
          list(m.by_resolution.map(function (g) { return g.resolution + " px"; })) + "." : "")));
    }
    m.warnings.forEach(function (w) { box.append(el("p", { class: "warning", role: "note" }, "Caution: " + w)); });
    box.append(stats([
      !clean && ["Mean accuracy, trained on protected", accuracy(m.mean_protected_acc)],
      ["Spread, trained on protected", accuracy(m.spread_protected_acc)],
      m.spread_clean_acc !== null && ["Spread, trained on originals", accuracy(m.spread_clean_acc)],
      ["Held-out test images", String(m.test_images)],
      m.holdout_images !== null && m.holdout_images !== m.test_images && ["Held-out images", String(m.holdout_images)],
      ["Chance accuracy", accuracy(m.chance)],
    ].concat(resolutionMeans(m))));
    box.append(el("h3", null, "Victim models"), victimTable(m.victims));
    box.append(el("h3", null, "Victim training"), stats([
      ["Victim models", list(m.settings.victims)],
      ["Seeds", list(m.settings.seeds)],
      ["Epochs", list(m.settings.epochs)],
      m.settings.resolutions && ["Resolutions", list(m.settings.resolutions.map(function (r) { return r + " px"; }))],
    ]));
    section.hidden = false;
  }

  /* ---------- previews (PreviewList) ---------- */
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
    if (!body.items.length) return;
    const grid = $("previews");
    grid.replaceChildren();
    body.items.forEach(function (p) {
      const what = "image " + p.index + " (" + p.class + ")";
      const trio = el("div", { class: "trio" });
      [["original", "Original"], ["protected", "Protected"], ["delta", "δ amplified"]].forEach(function (k) {
        const src = body.urls[p[k[0]]];
        if (!src) return;
        trio.append(el("figure", null,
          el("img", { src: src, alt: k[1] + " " + what, loading: "lazy", width: "96", height: "96" }),
          el("figcaption", null, k[1])));
      });
      grid.append(el("figure", { class: "preview" }, trio,
        el("figcaption", { class: "meta" },
          el("span", { class: "path", title: p.path }, p.path),
          el("span", null, "PSNR " + psnr(p.psnr) + " · SSIM " + p.ssim.toFixed(4)))));
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
    $("job-images").textContent = sg.imageCount(job);
    if (job.params) {
      if (job.params.eps !== undefined && job.params.eps !== null) $("job-eps").textContent = "ε = " + job.params.eps + "/255";
      if (job.params.method) $("job-method").textContent = job.params.method;
      if (job.params.preset) $("job-preset").textContent = job.params.preset;
      /* the R the API settled from the upload (params.resolution) and why (params.resolution_reason) */
      if (job.params.resolution) {
        $("job-resolution").textContent = job.params.resolution + " px" +
          (job.params.resolution_reason ? " — " + job.params.resolution_reason : "");
      }
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
  /* a button that asks first, then sends one request; a failure is shown beside the buttons */
  function confirmedAction(id, question, request, failure, done) {
    $(id).addEventListener("click", async function () {
      if (!window.confirm(question)) return;
      const button = this;
      button.disabled = true;
      $("action-error").textContent = "";
      try {
        await request();
      } catch (err) {
        button.disabled = false;
        $("action-error").textContent = failure + err.message;
        return;
      }
      done(button);
    });
  }

  confirmedAction(
    "cancel",
    "Cancel this job? Work done so far is discarded.",
    function () { return sg.api(api + "/cancel", { method: "POST" }); },
    "Could not cancel the job: ",
    function (button) { button.disabled = false; poll(); }
  );

  confirmedAction(
    "delete",
    "Delete this job and all its files? This cannot be undone.",
    function () { return sg.api(api, { method: "DELETE" }); },
    "Could not delete the job: ",
    function () { stopped = true; window.location.assign("/"); }
  );

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && (root.dataset.status === "queued" || root.dataset.status === "running")) poll();
  });

  /* the job as the server rendered the page: shown at once, then followed while it runs */
  if (render(JSON.parse($("job-data").textContent))) timer = setTimeout(poll, 1000);
})();
