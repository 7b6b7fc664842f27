/* The start page: upload form and the list of the owner's jobs. */
"use strict";

(function () {
  const sg = window.sg;
  const ARCHIVE = /\.(zip|tar\.gz|tgz|tar)$/i;

  /* ---------- upload form ---------- */
  const form = document.getElementById("upload-form");
  const input = document.getElementById("dataset");
  const zone = document.getElementById("dropzone");
  const fileInfo = document.getElementById("file-info");
  const errorBox = document.getElementById("form-error");
  const submit = document.getElementById("submit");
  const statusBlock = document.getElementById("upload-status");
  const bar = document.getElementById("upload-progress");
  const pct = document.getElementById("upload-percent");
  // form.dataset would be the input named "dataset" (named form controls shadow properties)
  const maxBytes = Number(form.getAttribute("data-max-bytes")) || Infinity;
  const apiUrl = form.getAttribute("data-api");
  if (isFinite(maxBytes)) document.getElementById("max-upload").textContent = ", up to " + sg.formatBytes(maxBytes);

  function showError(message) {
    errorBox.textContent = message || "";
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  /* Client-side check of the chosen file; returns an error sentence or "". */
  function checkFile(file) {
    if (!file) return "Choose a dataset archive first (.zip or .tar.gz).";
    if (!ARCHIVE.test(file.name)) {
      return "\u201c" + file.name + "\u201d is not a .zip or .tar.gz archive. Put the images in one folder per class and compress them as a zip.";
    }
    if (file.size === 0) return "\u201c" + file.name + "\u201d is empty.";
    if (file.size > maxBytes) {
      return "\u201c" + file.name + "\u201d is " + sg.formatBytes(file.size) + "; this server accepts archives up to " + sg.formatBytes(maxBytes) + ".";
    }
    return "";
  }

  function describeFile() {
    const file = input.files && input.files[0];
    if (!file) { fileInfo.textContent = ""; showError(""); return; }
    fileInfo.textContent = file.name + " (" + sg.formatBytes(file.size) + ")";
    showError(checkFile(file));
  }

  input.addEventListener("change", describeFile);

  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (e) {
      e.preventDefault();
      zone.classList.add("dragover");
    });
  });
  ["dragleave", "dragend", "drop"].forEach(function (type) {
    zone.addEventListener(type, function () { zone.classList.remove("dragover"); });
  });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    const files = e.dataTransfer && e.dataTransfer.files;
    if (!files || !files.length) return;
    if (files.length > 1) {
      showError("Drop one archive at a time.");
      return;
    }
    input.files = files;
    describeFile();
  });
  /* A file dropped next to the zone should not navigate away from the page. */
  window.addEventListener("dragover", function (e) { e.preventDefault(); });
  window.addEventListener("drop", function (e) { e.preventDefault(); });

  function value(name) {
    const field = form.elements.namedItem(name);
    if (!field) return "";
    if (field instanceof RadioNodeList) return field.value;
    return field.value.trim();
  }

  function buildForm(file) {
    const data = new FormData();
    data.append("dataset", file, file.name);
    data.append("preset", value("preset") || "fast");
    data.append("eps", value("eps") || value("strength"));
    ["method", "steps", "checkpoints", "inner_steps", "epochs", "resolution", "seed", "jpeg_quality"].forEach(function (name) {
      const v = value(name);
      if (v !== "") data.append(name, v);
    });
    data.append("output_format", value("output_format") || "png");
    data.append("measure", document.getElementById("measure").checked ? "true" : "false");
    data.append("skip_invalid", document.getElementById("skip_invalid").checked ? "true" : "false");
    return data;
  }

  function setBusy(busy) {
    submit.disabled = busy;
    submit.textContent = busy ? "Uploading…" : "Protect";
    form.setAttribute("aria-busy", busy ? "true" : "false");
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    const file = input.files && input.files[0];
    const problem = checkFile(file);
    if (problem) {
      showError(problem);
      input.focus();
      return;
    }
    const numbers = form.querySelectorAll("input[type=number]");
    for (const field of numbers) {
      if (field.value !== "" && !field.checkValidity()) {
        const label = form.querySelector("label[for=" + field.id + "]");
        showError((label ? label.textContent : field.name) + ": " + field.validationMessage);
        form.querySelector("details.advanced").open = true;
        field.focus();
        return;
      }
    }
    showError("");
    setBusy(true);
    bar.value = 0;
    pct.textContent = "0%";
    statusBlock.hidden = false;

    const xhr = new XMLHttpRequest();
    xhr.open("POST", apiUrl);
    xhr.withCredentials = true;
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRF-Token", sg.csrfToken());
    xhr.upload.addEventListener("progress", function (ev) {
      if (!ev.lengthComputable) return;
      const p = Math.round((ev.loaded / ev.total) * 100);
      bar.value = p;
      pct.textContent = p + "%";
    });
    xhr.addEventListener("load", function () {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = xhr.responseText; }
      if (xhr.status >= 200 && xhr.status < 300 && body && body.id) {
        bar.value = 100;
        pct.textContent = "100%";
        window.location.assign("/jobs/" + encodeURIComponent(body.id));
        return;
      }
      setBusy(false);
      statusBlock.hidden = true;
      if (xhr.status === 401) {
        showError("Your sign-in has expired. Please sign in again.");
        window.location.assign("/login");
        return;
      }
      showError(sg.errorText(body, xhr.status));
    });
    xhr.addEventListener("error", function () {
      setBusy(false);
      statusBlock.hidden = true;
      showError(sg.errorText(null, 0));
    });
    xhr.addEventListener("abort", function () {
      setBusy(false);
      statusBlock.hidden = true;
      showError("The upload was interrupted.");
    });
    xhr.send(buildForm(file));
  });

  /* ---------- job list ---------- */
  const table = document.getElementById("jobs-table");
  const tbody = document.getElementById("jobs-body");
  const jobsError = document.getElementById("jobs-error");
  const more = document.getElementById("jobs-more");
  const moreButton = document.getElementById("jobs-more-button");
  const PAGE = 20;
  let shown = PAGE;
  let timer = null;

  function row(job) {
    const active = job.status === "queued" || job.status === "running";
    const progressCell = active
      ? sg.el("td", null,
          sg.el("progress", { max: "1", value: String(job.progress || 0), "aria-label": "Progress of job " + job.id.slice(0, 8) }),
          " ", sg.el("span", { class: "small" }, sg.percent(job.progress)))
      : sg.el("td", { class: "small muted" }, job.status === "succeeded" ? "100%" : "—");
    return sg.el("tr", { "data-job-id": job.id },
      sg.el("td", null, sg.el("a", { href: "/jobs/" + encodeURIComponent(job.id) }, sg.el("code", null, job.id.slice(0, 8)))),
      sg.el("td", null, sg.el("span", { class: "badge " + job.status, title: sg.STATUS_WORDS[job.status] || job.status }, job.status),
        job.status === "running" && job.stage ? sg.el("span", { class: "small muted" }, " " + (sg.STAGES[job.stage] || job.stage)) : null),
      sg.el("td", { class: "hide-narrow small" }, sg.el("time", { datetime: job.created_at || "" }, sg.formatDate(job.created_at))),
      sg.el("td", { class: "num" }, sg.imageCount(job)),
      progressCell);
  }

  async function loadJobs() {
    clearTimeout(timer);
    const page = { items: [], total: 0 };
    try {
      /* the API serves at most 100 jobs per request (a JobList) */
      for (let offset = 0; offset < shown; offset += 100) {
        const limit = Math.min(100, shown - offset);
        const part = await sg.api(table.dataset.api + "?limit=" + limit + "&offset=" + offset);
        page.items = page.items.concat(part.items);
        page.total = part.total;
        if (part.items.length < limit) break;
      }
    } catch (err) {
      jobsError.textContent = "Could not load your jobs: " + err.message;
      timer = setTimeout(loadJobs, 10000);
      return;
    }
    jobsError.textContent = "";
    const jobs = page.items.slice(0, shown);
    tbody.replaceChildren();
    if (!jobs.length) {
      tbody.append(sg.el("tr", null, sg.el("td", { colspan: "5", class: "muted" }, "No jobs yet. Upload a dataset above to start one.")));
    } else {
      jobs.forEach(function (job) { tbody.append(row(job)); });
    }
    more.hidden = page.total <= jobs.length;
    const active = jobs.some(function (j) { return j.status === "queued" || j.status === "running"; });
    timer = setTimeout(loadJobs, active ? 2000 : 15000);
  }

  moreButton.addEventListener("click", function () {
    shown += PAGE;
    loadJobs();
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) loadJobs();
  });

  loadJobs();
})();
