import Kafka
import Testing

/// `TopicPartition` hashes its partition and its topic's length (ingest looks one up for every event): equal values
/// must still hash alike, and different topics of the same length, or partitions of one topic, stay apart.
@Suite("Topic partitions as keys")
struct TopicPartitionTests {
    @Test func equalPartitionsHashAlikeAndDifferentOnesStayApart() {
        let keys = [
            TopicPartition(topic: "progress.events", partition: 0), TopicPartition(topic: "progress.events", partition: 1),
            TopicPartition(topic: "progress.Events", partition: 0), TopicPartition(topic: "progress.state", partition: 0),
            TopicPartition(topic: "e\u{301}", partition: 0), TopicPartition(topic: "é", partition: 0),
        ]
        var table: [TopicPartition: Int] = [:]
        for (i, key) in keys.enumerated() { table[key] = i }
        #expect(table.count == keys.count)
        for (i, key) in keys.enumerated() {
            var copy = String()
            copy.append(contentsOf: key.topic)
            let same = TopicPartition(topic: copy, partition: key.partition)
            #expect(same == key && same.hashValue == key.hashValue && table[same] == i, "\(key)")
        }
        // Canonically equivalent spellings of different lengths are different topics here, as for Kafka.
        #expect(keys[4] != keys[5])
    }
}
