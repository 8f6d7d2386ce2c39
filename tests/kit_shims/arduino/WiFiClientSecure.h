// Stand-in WiFiClientSecure.h: records the CA the sketch trusts (ESP32 setCACert, ESP8266 setTrustAnchors).
#pragma once
#include "WiFi.h"

class X509List {
 public:
  const char* pem;
  explicit X509List(const char* text) : pem(text) {}
};

class WiFiClientSecure : public WiFiClient {
 public:
  void setCACert(const char* pem) { kit_record("\"call\":\"setCACert\",\"pem\":" + kit_json(pem)); }
  void setTrustAnchors(const X509List* list) {
    kit_record("\"call\":\"setTrustAnchors\",\"pem\":" + kit_json(list->pem));
  }
};
