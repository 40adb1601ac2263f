// transferlab web page: choose or drop a photo, preview it, show the top-5 classes as bars.
// Plain JS, no external assets (works offline). A server started with --api-key answers 401: the page
// then asks for the key, keeps it in sessionStorage (this tab only) and sends it as X-API-Key.
(function () {
  "use strict";
  const input = document.getElementById("file");
  const drop = document.getElementById("drop");
  const preview = document.getElementById("preview");
  const dropText = document.getElementById("drop-text");
  const status = document.getElementById("status");
  const results = document.getElementById("results");
  const model = document.getElementById("model");
  const classesBox = document.getElementById("classes-box");
  const classesSummary = document.getElementById("classes-summary");
  const classList = document.getElementById("classes");
  const keyForm = document.getElementById("key-form");
  const keyInput = document.getElementById("api-key");
  const KEY = "transferlab-api-key";
  let previewUrl = null;

  function api(url, options) {
    const key = sessionStorage.getItem(KEY);
    const headers = key ? { "X-API-Key": key } : {};
    return fetch(url, { ...options, headers }).then(resp => {
      if (resp.status === 401) {
        if (key) sessionStorage.removeItem(KEY);
        keyForm.hidden = false;
        keyInput.focus();
        throw new Error(key ? "the API key was not accepted" : "this server needs an API key");
      }
      return resp;
    });
  }

  keyForm.addEventListener("submit", e => {
    e.preventDefault();
    sessionStorage.setItem(KEY, keyInput.value.trim());
    keyInput.value = "";
    keyForm.hidden = true;
    loadModel();
  });

  const loadModel = () => api("/model").then(r => r.json()).then(info => {
    const acc = typeof info.val_accuracy === "number"
      ? `validation accuracy ${(info.val_accuracy * 100).toFixed(1)}%` : "validation accuracy not recorded";
    model.textContent = `${info.recipe} · ${info.num_classes} classes · ${acc} · ${info.backend} backend · ${info.input_size}px`;
    classList.replaceChildren(...info.classes.map(name => {
      const li = document.createElement("li");
      li.textContent = name;
      return li;
    }));
    classesSummary.textContent = `${info.num_classes} classes`;
    classesBox.open = info.num_classes <= 30;
    classesBox.hidden = false;
  }).catch(err => { model.textContent = `model info unavailable: ${err.message}`; });
  loadModel();

  function hidePreview() {
    preview.hidden = true;
    preview.removeAttribute("src");
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
  }

  // the preview is shown only once the browser has decoded the file: a non-image (or an image
  // format the browser cannot show) leaves no broken-image icon behind
  preview.addEventListener("load", () => {
    preview.classList.toggle("small", preview.naturalWidth < 160);
    preview.hidden = false;
  });
  preview.addEventListener("error", hidePreview);

  function setStatus(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", !!isError);
  }

  function render(prediction) {
    results.replaceChildren();
    prediction.top.forEach((row, i) => {
      const li = document.createElement("li");
      li.className = "result";
      li.id = `result-${i}`;
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = row.class;
      label.title = row.class;
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.display = "block";
      fill.style.width = `${(row.prob * 100).toFixed(1)}%`;
      bar.appendChild(fill);
      const pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = `${(row.prob * 100).toFixed(1)}%`;
      li.append(label, bar, pct);
      results.appendChild(li);
    });
  }

  async function classify(file) {
    if (!file) return;
    hidePreview();
    if (!file.type || file.type.startsWith("image/")) {
      previewUrl = URL.createObjectURL(file);
      preview.src = previewUrl;          // shown by the load handler, hidden again on error
    }
    dropText.textContent = file.name;
    results.replaceChildren();
    results.dataset.state = "loading";
    setStatus("classifying…");
    const form = new FormData();
    form.append("files", file, file.name);
    try {
      const resp = await api("/predict?topk=5", { method: "POST", body: form });
      const body = await resp.json().catch(() => ({ detail: `HTTP ${resp.status}` }));
      if (!resp.ok) throw new Error(body.detail || `HTTP ${resp.status}`);
      if (body.predictions[0].error) throw new Error(body.predictions[0].error);
      const pred = body.predictions[0];
      render(pred);
      const answer = pred.labels  // a multi-label run answers a set of labels with their scores
        ? (pred.labels.length
            ? pred.labels.map(l => `${l.class} ${(100 * l.prob).toFixed(0)}%`).join(" + ")
            : "none of the labels")
        : pred.unknown
          ? `unknown: none of the classes (score ${pred.score.toFixed(2)} below the threshold)`
          : pred.label;
      setStatus(`${answer} · ${body.time_ms.toFixed(0)} ms (${body.backend})`);
      results.dataset.state = "done";
    } catch (err) {
      hidePreview();                     // the server could not read it either: show no picture
      setStatus(`error: ${err.message}`, true);
      results.dataset.state = "error";
    }
  }

  input.addEventListener("change", () => classify(input.files[0]));
  ["dragenter", "dragover"].forEach(ev => drop.addEventListener(ev, e => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach(ev => drop.addEventListener(ev, e => {
    e.preventDefault();
    drop.classList.remove("over");
  }));
  drop.addEventListener("drop", e => classify(e.dataTransfer.files[0]));
  drop.addEventListener("keydown", e => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
})();
