// Shared by the hub's pages: the API token and API calls made with it.
// The token comes from a link's #token=… (a fragment is never sent to the server), else it is the one
// remembered in this browser. Browsers cannot set headers on a WebSocket, so it rides as a subprotocol.
"use strict";
const labhub = (() => {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) {
    localStorage.setItem("labhub-token", fromLink);
    history.replaceState(null, "", location.pathname + location.search);
  }
  const self = {
    token: localStorage.getItem("labhub-token") || "",
    onUnauthorized: () => {},  // a page says what to do when the token is refused (401)
    setToken(value) { self.token = value.trim(); localStorage.setItem("labhub-token", self.token); },
    async api(path, options) {
      options = options || {};
      options.headers = Object.assign({}, options.headers, { Authorization: "Bearer " + self.token });
      const response = await fetch(path, options);
      if (response.status === 401) self.onUnauthorized();
      let body = null;
      try { body = await response.json(); } catch (e) { body = null; }
      return { status: response.status, body };
    },
    // A file from the API (an export): fetched with the token, then saved under the name the hub gives it.
    async download(path, fallbackName) {
      const response = await fetch(path, { headers: { Authorization: "Bearer " + self.token } });
      if (response.status === 401) self.onUnauthorized();
      if (!response.ok) {
        let text = response.statusText;
        try { text = (await response.json()).error || text; } catch (e) { /* not JSON */ }
        throw new Error(text);
      }
      const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
      const link = document.createElement("a");
      link.href = URL.createObjectURL(await response.blob());
      link.download = named ? named[1] : fallbackName;
      document.body.append(link); link.click(); link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    },
    socket(query) {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      return new WebSocket(scheme + location.host + "/api/live?" + query, ["labhub", "bearer." + self.token]);
    },
  };
  return self;
})();
