// Progressive enhancement: refresh the account suggestions from the API as the rep types.
(function () {
  var input = document.getElementById("account_name");
  var list = document.getElementById("accounts");
  if (!input || !list || !window.fetch) return;
  var timer = null;
  input.addEventListener("input", function () {
    clearTimeout(timer);
    var q = input.value.trim();
    if (q.length < 2) return;
    timer = setTimeout(function () {
      fetch("/v1/accounts?limit=10&q=" + encodeURIComponent(q), {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(function (accounts) {
          list.innerHTML = "";
          accounts.forEach(function (a) {
            var opt = document.createElement("option");
            opt.value = a.name;
            list.appendChild(opt);
          });
        })
        .catch(function () {});
    }, 150);
  });
})();
