// Runs before the first paint (a classic script in <head>) so the page never flashes the
// wrong theme: the saved choice wins, else the system's prefers-color-scheme.
(function () {
    var saved = null;
    try {
        saved = localStorage.getItem("bitpeer.theme");
    } catch (e) {
        saved = null;
    }
    var dark = saved ? saved === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
    document.documentElement.dataset.theme = dark ? "dark" : "light";
})();
