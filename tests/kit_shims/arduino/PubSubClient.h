// Stand-in PubSubClient.h: records the sketch's MQTT calls. KIT_REFUSE=N: the first N connects are refused
// (state 5, not authorised); KIT_HUB_SAYS=text: once subscribed, loop() delivers `text` on the subscribed topic.
#pragma once
#include <cstdlib>
#include <functional>
#include "Arduino.h"
#include "WiFi.h"

#define MQTT_CALLBACK_SIGNATURE void (*callback)(char*, uint8_t*, unsigned int)

class PubSubClient {
  bool up = false;
  int refusals = std::getenv("KIT_REFUSE") ? std::atoi(std::getenv("KIT_REFUSE")) : 0;
  int lastState = -1;
  std::string subscribed;
  bool said = false;
  void (*handler)(char*, uint8_t*, unsigned int) = nullptr;

 public:
  explicit PubSubClient(Client&) {}
  PubSubClient& setServer(const char* host, uint16_t port) {
    kit_record("\"call\":\"setServer\",\"host\":" + kit_json(host) + ",\"port\":" + std::to_string(port));
    return *this;
  }
  PubSubClient& setCallback(void (*cb)(char*, uint8_t*, unsigned int)) {
    handler = cb;
    kit_record("\"call\":\"setCallback\"");
    return *this;
  }
  bool setBufferSize(uint16_t size) {
    kit_record("\"call\":\"setBufferSize\",\"size\":" + std::to_string(size));
    return true;
  }
  bool connect(const char* id, const char* user, const char* pass, const char* willTopic, uint8_t willQos,
               bool willRetain, const char* willMessage) {
    bool ok = refusals <= 0;
    refusals--;
    kit_record("\"call\":\"connect\",\"at_ms\":" + std::to_string(millis()) + ",\"client_id\":" + kit_json(id) +
               ",\"username\":" + kit_json(user) + ",\"password\":" + kit_json(pass) +
               ",\"will_topic\":" + kit_json(willTopic) + ",\"will_qos\":" + std::to_string(willQos) +
               ",\"will_retain\":" + (willRetain ? "true" : "false") + ",\"will_message\":" + kit_json(willMessage) +
               ",\"ok\":" + (ok ? "true" : "false"));
    up = ok;
    lastState = ok ? 0 : 5;
    return ok;
  }
  bool connect(const char* id, const char* user, const char* pass) {
    return connect(id, user, pass, nullptr, 0, false, nullptr);
  }
  bool connected() { return up; }
  int state() { return lastState; }
  bool publish(const char* topic, const char* payload, bool retained = false) {
    kit_record("\"call\":\"publish\",\"at_ms\":" + std::to_string(millis()) + ",\"topic\":" + kit_json(topic) +
               ",\"payload\":" + kit_json(payload) + ",\"retain\":" + (retained ? "true" : "false"));
    return up;
  }
  bool subscribe(const char* topic) {
    kit_record("\"call\":\"subscribe\",\"topic\":" + kit_json(topic));
    subscribed = topic;
    return up;
  }
  bool loop() {
    const char* says = std::getenv("KIT_HUB_SAYS");
    if (up && says && !said && handler && !subscribed.empty()) {
      said = true;
      std::string topic = subscribed;
      handler(&topic[0], (uint8_t*)says, (unsigned int)std::strlen(says));
    }
    return up;
  }
};
