// fapiao-ledger console: small keyboard help, nothing the pages need to work.
(function () {
  var pending = null;
  document.addEventListener("keydown", function (e) {
    var tag = (e.target && e.target.tagName) || "";
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "/") {
      var box = document.getElementById("find-invoice");
      if (box) { e.preventDefault(); box.focus(); }
      return;
    }
    if (pending === "g") {
      var to = { d: "/console", i: "/console/invoices", q: "/console/queues/missing" }[e.key];
      pending = null;
      if (to) { window.location.href = to; }
      return;
    }
    if (e.key === "g") { pending = "g"; }
  });
  document.addEventListener("click", function (e) {
    var el = e.target.closest && e.target.closest("[data-copy]");
    if (el && navigator.clipboard) { navigator.clipboard.writeText(window.location.href); }
  });
})();
