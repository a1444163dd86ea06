// docpipe review page: the box toggle, and evidence highlighting while the pointer is on a field.
"use strict";
(function () {
  const toggle = document.getElementById("show-boxes");
  if (toggle) {
    toggle.addEventListener("change", () => document.body.classList.toggle("noboxes", !toggle.checked));
  }
  function marks(token) {
    return document.querySelectorAll(`[data-ev~="${CSS.escape(token)}"]`);
  }
  function light(field, on) {
    field.classList.toggle("on", on);
    marks(field.dataset.evref).forEach((el) => el.classList.toggle("hl", on));
  }
  document.querySelectorAll("[data-evref]").forEach((field) => {
    field.addEventListener("mouseenter", () => light(field, true));
    field.addEventListener("mouseleave", () => light(field, false));
    // A click brings the evidence's page into view.
    field.addEventListener("click", () => {
      const first = marks(field.dataset.evref)[0];
      if (first) first.scrollIntoView({ block: "center", behavior: "smooth" });
    });
  });
})();
