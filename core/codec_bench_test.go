package core

import "testing"

// Benchmarks for the messages the simulator encodes and decodes most. Run
// with -benchmem; compare medians of -count 5.

func benchEncode[T any](b *testing.B, v T, enc func(T) ([]byte, error)) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := enc(v); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDecode[T any](b *testing.B, data []byte, dec func([]byte) (T, error)) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dec(data); err != nil {
			b.Fatal(err)
		}
	}
}

func mustEncode(b *testing.B, enc func() ([]byte, error)) []byte {
	data, err := enc()
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func BenchmarkEncodeUpgradeStatus(b *testing.B) {
	benchEncode(b, sampleStatus(), UpgradeStatus.Encode)
}

func BenchmarkDecodeUpgradeStatus(b *testing.B) {
	benchDecode(b, mustEncode(b, sampleStatus().Encode), DecodeUpgradeStatus)
}

func BenchmarkEncodeDeviceInfo(b *testing.B) {
	benchEncode(b, sampleDeviceInfo(), DeviceInfo.Encode)
}

func BenchmarkDecodeDeviceInfo(b *testing.B) {
	benchDecode(b, mustEncode(b, sampleDeviceInfo().Encode), DecodeDeviceInfo)
}

func BenchmarkEncodeDeviceState(b *testing.B) {
	benchEncode(b, sampleDeviceState(), DeviceState.Encode)
}

func BenchmarkDecodeDeviceState(b *testing.B) {
	benchDecode(b, mustEncode(b, sampleDeviceState().Encode), DecodeDeviceState)
}

func BenchmarkEncodeUpgradeMarker(b *testing.B) {
	benchEncode(b, sampleMarker(), UpgradeMarker.Encode)
}

func BenchmarkDecodeUpgradeMarker(b *testing.B) {
	benchDecode(b, mustEncode(b, sampleMarker().Encode), DecodeUpgradeMarker)
}

func BenchmarkEncodeHeartbeat(b *testing.B) {
	benchEncode(b, sampleHeartbeat(), Heartbeat.Encode)
}

func BenchmarkDecodeHeartbeat(b *testing.B) {
	benchDecode(b, mustEncode(b, sampleHeartbeat().Encode), DecodeHeartbeat)
}

func BenchmarkParseVersion(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseVersion("v1.2.3-rc.1+build.7"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVersionString(b *testing.B) {
	v := Version{Major: 1, Minor: 2, Patch: 3, Pre: []string{"rc", "1"}}
	b.ReportAllocs()
	for b.Loop() {
		_ = v.String()
	}
}

func BenchmarkParseVersionPlain(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseVersion("v1.12.3"); err != nil {
			b.Fatal(err)
		}
	}
}
