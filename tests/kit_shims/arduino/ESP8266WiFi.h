// Stand-in ESP8266WiFi.h: the same Wi-Fi stand-in as the ESP32's.
#pragma once
#include "WiFi.h"
