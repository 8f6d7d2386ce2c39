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
    socket(query) {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      return new WebSocket(scheme + location.host + "/api/live?" + query, ["labhub", "bearer." + self.token]);
    },
  };
  return self;
})();
